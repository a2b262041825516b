"""Allocation rows as the domain sees them, for verify and the initial list of the feed (the
writes are ``allocator.store.write``, the API's reads ``allocator.store.documents``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import netaddr
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from allocator.domain.address import Family
from allocator.domain.model import Allocation

_COLUMNS = (
    "a.ip, a.family, r.name AS range, a.owner, a.metadata, a.created_at, a.revision,"
    " a.range_id, r.cidr"
)
_FROM = "allocation a JOIN ip_range r ON r.id = a.range_id"

_BY_IP = text(f"SELECT {_COLUMNS} FROM {_FROM} WHERE a.ip = CAST(:ip AS inet)")
_BY_IP_LOCKED = text(
    f"SELECT {_COLUMNS} FROM {_FROM} WHERE a.ip = CAST(:ip AS inet) FOR UPDATE OF a"
)


@dataclass(frozen=True, slots=True)
class Held:
    """An allocation with where it lives in the store."""

    allocation: Allocation
    range_id: int
    network: netaddr.IPNetwork


def _held(row: Row[Any]) -> Held:
    allocation = Allocation(
        ip=netaddr.IPAddress(str(row.ip)),
        family=Family(row.family),
        range=row.range,
        owner=row.owner,
        metadata=row.metadata,
        created_at=row.created_at,
        revision=row.revision,
    )
    return Held(allocation, row.range_id, netaddr.IPNetwork(str(row.cidr)))


async def by_ip(
    connection: AsyncConnection, ip: netaddr.IPAddress, *, lock: bool = False
) -> Held | None:
    """Return the allocation of ``ip`` (row-locked with ``lock``), or None."""
    query = _BY_IP_LOCKED if lock else _BY_IP
    row = (await connection.execute(query, {"ip": str(ip)})).first()
    return _held(row) if row else None


async def page(
    connection: AsyncConnection,
    *,
    range_id: int | None,
    owner: str | None,
    family: Family | None,
    after: netaddr.IPAddress | None,
    limit: int,
) -> list[Allocation]:
    """Return up to ``limit`` allocations matching the filters, in address order, after ``after``."""
    conditions = ["TRUE"]
    params: dict[str, Any] = {"limit": limit}
    if range_id is not None:
        conditions.append("a.range_id = :range_id")
        params["range_id"] = range_id
    if owner is not None:
        conditions.append("a.owner = :owner")
        params["owner"] = owner
    if family is not None:
        conditions.append("a.family = :family")
        params["family"] = str(family)
    if after is not None:
        conditions.append("a.ip > CAST(:after AS inet)")
        params["after"] = str(after)
    query = text(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE {' AND '.join(conditions)} ORDER BY a.ip LIMIT :limit"
    )
    return [_held(row).allocation for row in await connection.execute(query, params)]
