"""Ranges: rows of ``ip_range`` and the statements that add, change and remove them."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import netaddr
import orjson
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from allocator.domain.address import parse_network
from allocator.domain.model import Range
from allocator.domain.range import ServiceRange
from allocator.store import bitmap
from allocator.store.event_log import bump_head, event_json

_COLUMNS = (
    "id, name, cidr, allocated, created_at, revision, static_allocated, cooling,"
    " release_cooldown_seconds, allocatable"
)

_BY_NAME = text(f"SELECT {_COLUMNS} FROM ip_range WHERE name = :name")
_BY_NAME_LOCKED = text(f"SELECT {_COLUMNS} FROM ip_range WHERE name = :name FOR UPDATE")
_ALL = text(f"SELECT {_COLUMNS} FROM ip_range ORDER BY name")
_CONTAINING = text(f"SELECT {_COLUMNS} FROM ip_range WHERE cidr >>= CAST(:ip AS inet)")
_OVERLAPPING = text(
    "SELECT name FROM ip_range"
    " WHERE cidr && CAST(:cidr AS cidr) AND id IS DISTINCT FROM :other_than"
    " LIMIT 1"
)
_LOCK = text("SELECT allocator_range_lock(:id)")
_SHARE = text("SELECT allocator_share_range_lock(:id)")
_CIDR = text("SELECT cidr FROM ip_range WHERE id = :id")

_INSERT = text(
    "INSERT INTO ip_range"
    " (name, cidr, family, size, static_size, release_cooldown_seconds, created_at, revision)"
    " VALUES (:name, CAST(:cidr AS cidr), :family, :size, :static_size,"
    " :release_cooldown_seconds, :created_at, 0)"
    " RETURNING id"
)
_PUBLISH_ADDED = text(
    f"WITH head AS ({bump_head(1)}),"
    " stamped AS (UPDATE ip_range SET revision = head.revision FROM head WHERE id = :id)"
    " INSERT INTO event (revision, type, payload)"
    f" SELECT head.revision, 'RANGE_ADDED',"
    f" {event_json('RANGE_ADDED', 'range', 'CAST(:document AS jsonb)', stamp=True)}"
    " FROM head RETURNING revision"
)
_PUBLISH_UPDATED = text(
    f"WITH head AS ({bump_head(1)})"
    " INSERT INTO event (revision, type, payload)"
    " SELECT head.revision, 'RANGE_UPDATED',"
    " json_build_object('type', 'RANGE_UPDATED', 'revision', head.revision,"
    " 'range', range_json(r))"
    " FROM head, ip_range r"
    " WHERE r.id = :id"
    " RETURNING CAST(payload -> 'range' AS text)"
)
_DELETE = text(
    "WITH gone AS (DELETE FROM ip_range WHERE id = :id RETURNING id),"
    f" head AS ({bump_head(1, after='gone')})"
    " INSERT INTO event (revision, type, payload)"
    f" SELECT head.revision, 'RANGE_REMOVED',"
    f" {event_json('RANGE_REMOVED', 'range', 'CAST(:document AS jsonb)', stamp=False)}"
    " FROM head RETURNING revision"
)


def _range(row: Row[Any]) -> Range:
    return Range(
        id=row.id,
        name=row.name,
        geometry=ServiceRange.of(parse_network(str(row.cidr)), check_limits=False),
        allocated=row.allocated,
        created_at=row.created_at,
        revision=row.revision,
        static_allocated=row.static_allocated,
        cooling=row.cooling,
        release_cooldown_seconds=row.release_cooldown_seconds,
        allocatable=row.allocatable,
    )


async def get(connection: AsyncConnection, name: str, *, lock: bool = False) -> Range | None:
    """Return the range named ``name`` (row-locked with ``lock``), or None."""
    row = (await connection.execute(_BY_NAME_LOCKED if lock else _BY_NAME, {"name": name})).first()
    return _range(row) if row else None


async def list_all(connection: AsyncConnection) -> list[Range]:
    """Return every range, ordered by name."""
    return [_range(row) for row in await connection.execute(_ALL)]


async def containing(connection: AsyncConnection, ip: netaddr.IPAddress) -> Range | None:
    """Return the range whose CIDR holds ``ip`` (at most one: ranges never overlap), or None."""
    row = (await connection.execute(_CONTAINING, {"ip": str(ip)})).first()
    return _range(row) if row else None


async def overlapping(
    connection: AsyncConnection, geometry: ServiceRange, *, other_than: int | None = None
) -> str | None:
    """Return the name of a range overlapping ``geometry`` (other than the range of id
    ``other_than``), or None."""
    params = {"cidr": geometry.cidr, "other_than": other_than}
    return (await connection.execute(_OVERLAPPING, params)).scalar()


async def lock(connection: AsyncConnection, range_id: int) -> None:
    """Take the range's lock of its geometry until commit, waiting for the writes in flight in
    it; writes that arrive meanwhile wait for this transaction (migration 0006)."""
    await connection.execute(_LOCK, {"id": range_id})


async def shared_cidr(connection: AsyncConnection, range_id: int) -> str | None:
    """Take the range's lock of its geometry shared until commit (as a write does: no resize
    meanwhile) and return its CIDR as it is then, or None when the range is gone."""
    await connection.execute(_SHARE, {"id": range_id})
    cidr = (await connection.execute(_CIDR, {"id": range_id})).scalar()
    return None if cidr is None else str(cidr)


async def add(
    connection: AsyncConnection,
    name: str,
    geometry: ServiceRange,
    created_at: datetime,
    *,
    release_cooldown_seconds: int = 0,
) -> Range:
    """Insert a range with its bitmap (every block when eager) and append RANGE_ADDED.

    The exclusion constraint refuses an overlapping CIDR even when two creations race.
    """
    range_id = (
        await connection.execute(
            _INSERT,
            {
                "name": name,
                "cidr": geometry.cidr,
                "family": str(geometry.family),
                "size": geometry.size,
                "static_size": geometry.static_band.size,
                "release_cooldown_seconds": release_cooldown_seconds,
                "created_at": created_at,
            },
        )
    ).scalar_one()
    if geometry.eager:
        for band in geometry.bands:
            await bitmap.create_all_blocks(connection, range_id, band)
    draft = Range(
        range_id,
        name,
        geometry,
        0,
        created_at,
        0,
        release_cooldown_seconds=release_cooldown_seconds,
    )
    revision = (
        await connection.execute(
            _PUBLISH_ADDED, {"id": range_id, "document": orjson.dumps(draft.document()).decode()}
        )
    ).scalar_one()
    return dataclasses.replace(draft, revision=revision)


COLUMNS_SET = {
    "release_cooldown_seconds": "release_cooldown_seconds",
    "allocatable": "allocatable",
}
"""The columns a change of a range sets as given, by field (``cidr`` is a resize)."""

_RESIZE = text(
    "UPDATE ip_range r"
    " SET cidr = CAST(:cidr AS cidr),"
    "     size = :size,"
    "     static_size = CAST(:static_size AS integer),"
    "     static_allocated = CASE WHEN CAST(:static_size AS integer) = 0 THEN 0 ELSE ("
    "         SELECT count(*)"
    "         FROM allocation a"
    "         WHERE a.range_id = r.id"
    "           AND a.ip BETWEEN CAST(:static_first AS inet) AND CAST(:static_last AS inet)) END"
    " WHERE id = :id"
)
_OUTSIDE = text(
    "SELECT count(*) OVER () AS total, host(t.ip) AS ip"
    " FROM (SELECT ip FROM allocation WHERE range_id = :id"
    "       UNION ALL"
    "       SELECT ip FROM cooling_address WHERE range_id = :id) AS t"
    " WHERE NOT coalesce(allocator_offset(t.ip, CAST(:cidr AS cidr)) BETWEEN 1 AND :size, false)"
    " ORDER BY t.ip"
    " LIMIT :most"
)


async def outside(
    connection: AsyncConnection, stored: Range, geometry: ServiceRange, most: int
) -> tuple[int, list[str]]:
    """Return how many allocated or cooling addresses of ``stored`` are not usable addresses of
    ``geometry``, and up to ``most`` of them in address order."""
    rows = (
        await connection.execute(
            _OUTSIDE,
            {"id": stored.id, "cidr": geometry.cidr, "size": geometry.size, "most": most},
        )
    ).all()
    return (rows[0].total if rows else 0), [row.ip for row in rows]


async def update(
    connection: AsyncConnection,
    stored: Range,
    changes: dict[str, Any],
    geometry: ServiceRange | None = None,
) -> str:
    """Set the columns of ``changes`` (fields of ``COLUMNS_SET``) on the range ``stored``, held
    under its lock (``lock``), resize it to ``geometry`` when given, and append RANGE_UPDATED;
    return the Range object after the change as JSON.

    A resize keeps every allocation and cooling address: the blocks are dropped first (blocks
    before the range row, the order every writer takes them in), then built again from the
    rows for the new geometry, and the static band's count is taken from the rows.
    """
    if geometry is not None:
        await bitmap.drop_blocks(connection, stored.id)
        await connection.execute(
            _RESIZE,
            {
                "id": stored.id,
                "cidr": geometry.cidr,
                "size": geometry.size,
                "static_size": geometry.static_band.size,
                # The static band starts at offset 1 (an empty one is counted as holding none).
                "static_first": str(geometry.address_at(1)),
                "static_last": str(geometry.address_at(max(geometry.static_band.last, 1))),
            },
        )
        await bitmap.build_blocks(connection, stored.id)
    columns = {field: value for field, value in changes.items() if field in COLUMNS_SET}
    if columns:
        assignments = ", ".join(f"{COLUMNS_SET[field]} = :{field}" for field in columns)
        await connection.execute(
            text(f"UPDATE ip_range SET {assignments} WHERE id = :id"), {"id": stored.id, **columns}
        )
    document: str = (await connection.execute(_PUBLISH_UPDATED, {"id": stored.id})).scalar_one()
    return document


async def remove(connection: AsyncConnection, stored: Range) -> int:
    """Delete a range (it must hold no allocations) and its bitmap; return the revision."""
    document = orjson.dumps(stored.document()).decode()
    result = await connection.execute(_DELETE, {"id": stored.id, "document": document})
    return int(result.scalar_one())
