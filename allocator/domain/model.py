"""The objects the allocator hands out: ranges and allocations, as clients see them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import netaddr

from allocator.domain.address import Family, format_address
from allocator.domain.range import ServiceRange


def format_time(moment: datetime) -> str:
    """Return RFC 3339 UTC text with microseconds and a ``Z`` suffix, as Postgres writes it
    (``allocator_time``): an object read from Python and from SQL is the same text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Range:
    """A range as stored: its identity, geometry and allocation count."""

    id: int
    name: str
    geometry: ServiceRange
    allocated: int
    created_at: datetime
    revision: int
    static_allocated: int = 0
    """How many of the allocations lie in the static band."""
    cooling: int = 0
    """Released addresses still cooling down: neither allocated nor free."""
    release_cooldown_seconds: int = 0
    allocatable: bool = True
    """False while the range is drained: it serves no new allocation."""

    @property
    def cidr(self) -> str:
        return self.geometry.cidr

    @property
    def free(self) -> int:
        return self.geometry.size - self.allocated - self.cooling

    def document(self) -> dict[str, Any]:
        """Return the Range object of the HTTP contract."""
        band = self.geometry.static_band
        return {
            "name": self.name,
            "cidr": self.geometry.cidr,
            "family": str(self.geometry.family),
            "size": self.geometry.size,
            "allocated": self.allocated,
            "cooling": self.cooling,
            "free": self.free,
            "static_band": {
                "first": str(self.geometry.address_at(band.first)) if band.size else None,
                "last": str(self.geometry.address_at(band.last)) if band.size else None,
                "size": band.size,
            },
            "release_cooldown_seconds": self.release_cooldown_seconds,
            "allocatable": self.allocatable,
            "created_at": format_time(self.created_at),
            "revision": self.revision,
        }


@dataclass(frozen=True, slots=True)
class Allocation:
    """One held address."""

    ip: netaddr.IPAddress
    family: Family
    range: str
    owner: str
    metadata: dict[str, Any]
    created_at: datetime
    revision: int

    @classmethod
    def of_document(cls, document: dict[str, Any]) -> Allocation:
        """Return the allocation an Allocation object of the HTTP contract describes."""
        return cls(
            ip=netaddr.IPAddress(document["ip"]),
            family=Family(document["family"]),
            range=document["range"],
            owner=document["owner"],
            metadata=document["metadata"],
            created_at=datetime.fromisoformat(document["created_at"]),
            revision=document["revision"],
        )

    def document(self) -> dict[str, Any]:
        """Return the Allocation object of the HTTP contract."""
        return {
            "ip": format_address(self.ip),
            "family": str(self.family),
            "range": self.range,
            "owner": self.owner,
            "metadata": self.metadata,
            "created_at": format_time(self.created_at),
            "revision": self.revision,
        }
