"""The API's reads of ranges and allocations (the writes are the allocator's, see
``allocator.service.allocator``)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import netaddr
import orjson

from allocator.domain.address import Family, format_address, parse_address
from allocator.domain.errors import InvalidRequest, IPNotAllocated, RangeNotFound
from allocator.service.unit_of_work import statement
from allocator.store import documents


@dataclass(frozen=True, slots=True)
class Reader:
    """The API's reads, each one statement on the request path's asyncpg pool."""

    pool: Any
    acquire_timeout: float

    async def allocation(self, ip: netaddr.IPAddress) -> str:
        """Return the Allocation object of ``ip`` as JSON; raise IPNotAllocated (saying until when
        and by whom released, for a cooling address)."""
        found = await statement(
            self.pool,
            lambda c: documents.allocation(c, format_address(ip)),
            acquire_timeout=self.acquire_timeout,
        )
        if found.allocation is not None:
            return found.allocation
        if found.available_at is not None:
            raise IPNotAllocated(
                f"{ip} is not allocated: released by {found.released_by!r}, it cools down"
                f" until {found.available_at}",
                available_at=found.available_at,
                released_by=found.released_by,
            )
        raise IPNotAllocated(f"{ip} is not allocated")

    async def allocations(
        self,
        *,
        range_name: str | None = None,
        owner: str | None = None,
        family: Family | None = None,
        limit: int = 500,
        cursor: str | None = None,
    ) -> bytes:
        """Return one page of allocations in address order as the contract's list object
        (``items``, the ``revision`` it was read at, ``next_cursor``).

        Raises RangeNotFound for an unknown ``range_name``, InvalidRequest for a bad cursor.
        """
        after = format_address(decode_cursor(cursor)) if cursor else None
        page = await statement(
            self.pool,
            lambda c: documents.page(
                c,
                limit,
                range=range_name,
                owner=owner,
                family=str(family) if family else None,
                after=after,
            ),
            acquire_timeout=self.acquire_timeout,
        )
        if not page.range_known:
            raise RangeNotFound(f"no range named {range_name!r}")
        next_cursor = encode_cursor(page.last) if page.last else None
        return b'{"items":%s,"revision":%d,"next_cursor":%s}' % (
            page.items.encode(),
            page.revision,
            orjson.dumps(next_cursor),
        )

    async def range_(self, name: str) -> str:
        """Return the Range object named ``name`` as JSON; raise RangeNotFound."""
        found = await statement(
            self.pool, lambda c: documents.range_(c, name), acquire_timeout=self.acquire_timeout
        )
        if found is None:
            raise RangeNotFound(f"no range named {name!r}")
        return found

    async def ranges(self) -> bytes:
        """Return the contract's list of every range, ordered by name."""
        items = await statement(self.pool, documents.ranges, acquire_timeout=self.acquire_timeout)
        return b'{"items":%s}' % items.encode()


def encode_cursor(ip: str) -> str:
    return base64.urlsafe_b64encode(ip.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> netaddr.IPAddress:
    """Return the address a cursor resumes after; raise InvalidRequest for a malformed one."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest(f"malformed cursor {cursor!r}", field="cursor") from None
    return parse_address(text, field="cursor")
