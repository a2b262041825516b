"""The statements of ``allocator verify``: reading the bitmap, the allocation rows and the log in
address (or revision) order, page by page, and the narrow writes of its repairs.

Reads run in the caller's REPEATABLE READ transaction, so pages read one after another still see
one snapshot. Repairs run in short transactions of their own, taking the locks allocations take
(block, then range row, then log head), so the service keeps serving while they run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from allocator.domain.band import BandKind
from allocator.store.allocations import Held
from allocator.store.event_log import bump_head, event_json


@dataclass(frozen=True, slots=True)
class StoredBits:
    band: BandKind
    block_no: int
    bits: bytes
    free: int


@dataclass(frozen=True, slots=True)
class LogGap:
    """Revisions ``first..last`` that the log should hold and does not."""

    first: int
    last: int


_COUNT_BLOCKS = text("SELECT count(*) FROM bitmap_block WHERE range_id = :range_id")
_BLOCKS_FROM = text(
    "SELECT band, block_no, bits, free FROM bitmap_block"
    " WHERE range_id = :range_id AND (band, block_no) > (:band, :block_no)"
    " ORDER BY band, block_no LIMIT :limit"
)
_ADDRESSES_FROM = text(
    "SELECT ip FROM allocation WHERE range_id = :range_id AND ip > CAST(:after AS inet)"
    " ORDER BY ip LIMIT :limit"
)
_ADDRESSES_FIRST = text(
    "SELECT ip FROM allocation WHERE range_id = :range_id ORDER BY ip LIMIT :limit"
)
# Holes between consecutive retained events, and between the last one and the head.
_LOG_GAPS = text(
    "WITH h AS (SELECT revision AS head, compacted FROM log_head WHERE id = 1),"
    " e AS (SELECT event.revision, lag(event.revision) OVER (ORDER BY event.revision) AS prev"
    "  FROM event, h WHERE event.revision > h.compacted AND event.revision <= h.head)"
    " SELECT first, last FROM ("
    "  SELECT COALESCE(e.prev, h.compacted) + 1 AS first, e.revision - 1 AS last FROM e, h"
    "  UNION ALL"
    "  SELECT COALESCE((SELECT max(revision) FROM e), h.compacted) + 1, h.head FROM h"
    " ) AS gap WHERE first <= last ORDER BY first LIMIT :limit"
)
_BEYOND_HEAD = text(
    "SELECT count(*) FROM event WHERE revision > (SELECT revision FROM log_head WHERE id = 1)"
)
_FREE = text(
    "SELECT free FROM bitmap_block WHERE range_id = :range_id AND band = :band"
    " AND block_no = :block_no"
)
_WRITE_BLOCK = text(
    "UPDATE bitmap_block SET bits = :bits, free = :free"
    " WHERE range_id = :range_id AND band = :band AND block_no = :block_no"
)
# A cooling address keeps its bit: it is held as much as an allocated one.
_HELD = text(
    "SELECT host(ip) FROM allocation WHERE range_id = :range_id AND ip = ANY(CAST(:ips AS inet[]))"
    " UNION ALL"
    " SELECT host(ip) FROM cooling_address"
    " WHERE range_id = :range_id AND ip = ANY(CAST(:ips AS inet[]))"
)
_COOLING = text("SELECT ip FROM cooling_address WHERE range_id = :range_id ORDER BY ip")
# FOR NO KEY UPDATE, as allocations' count updates take it: it does not block the key-share
# locks of foreign keys from new allocation rows.
_LOCK_COUNT = text(
    "SELECT allocated, static_allocated, cooling FROM ip_range"
    " WHERE id = :range_id FOR NO KEY UPDATE"
)
_COUNT_ROWS = text(
    "SELECT count(*) AS allocated,"
    " count(*) FILTER (WHERE allocator_offset(a.ip, r.cidr) <= r.static_size) AS static_allocated,"
    " (SELECT count(*) FROM cooling_address c WHERE c.range_id = :range_id) AS cooling"
    " FROM allocation a JOIN ip_range r ON r.id = a.range_id WHERE a.range_id = :range_id"
)
_SET_COUNT = text(
    "UPDATE ip_range"
    " SET allocated = :allocated, static_allocated = :static_allocated, cooling = :cooling"
    " WHERE id = :range_id"
)
_REMOVE = text(
    "WITH gone AS (DELETE FROM allocation WHERE ip = CAST(:ip AS inet) RETURNING ip),"
    f" head AS ({bump_head(1, after='gone')})"
    " INSERT INTO event (revision, type, payload)"
    " SELECT head.revision, 'RELEASED',"
    f" {event_json('RELEASED', 'allocation', 'CAST(:document AS jsonb)', stamp=False)}"
    " FROM head RETURNING revision"
)


async def count_blocks(connection: AsyncConnection, range_id: int) -> int:
    return int((await connection.execute(_COUNT_BLOCKS, {"range_id": range_id})).scalar_one())


async def blocks_after(
    connection: AsyncConnection, range_id: int, after: tuple[int, int], limit: int
) -> list[StoredBits]:
    """Return up to ``limit`` blocks of a range after ``(band, block_no)``, in address order."""
    rows = await connection.execute(
        _BLOCKS_FROM,
        {"range_id": range_id, "band": after[0], "block_no": after[1], "limit": limit},
    )
    return [StoredBits(BandKind(r.band), r.block_no, r.bits, r.free) for r in rows]


async def addresses_after(
    connection: AsyncConnection, range_id: int, after: str | None, limit: int
) -> list[Any]:
    """Return up to ``limit`` allocated addresses of a range (``ipaddress`` objects) after
    ``after``, in address order."""
    if after is None:
        rows = await connection.execute(_ADDRESSES_FIRST, {"range_id": range_id, "limit": limit})
    else:
        params = {"range_id": range_id, "after": after, "limit": limit}
        rows = await connection.execute(_ADDRESSES_FROM, params)
    return [row.ip for row in rows]


async def log_gaps(connection: AsyncConnection, limit: int) -> tuple[list[LogGap], int]:
    """Return up to ``limit`` holes in the log (revisions after ``compacted`` up to the head
    that have no event), and how many events lie beyond the head."""
    gaps = [LogGap(r.first, r.last) for r in await connection.execute(_LOG_GAPS, {"limit": limit})]
    beyond = int((await connection.execute(_BEYOND_HEAD)).scalar_one())
    return gaps, beyond


async def block_free(
    connection: AsyncConnection, range_id: int, band: BandKind, block_no: int
) -> int:
    """Return the stored free count of a block (the caller holds its lock)."""
    params = {"range_id": range_id, "band": int(band), "block_no": block_no}
    return int((await connection.execute(_FREE, params)).scalar_one())


async def write_block(
    connection: AsyncConnection,
    range_id: int,
    band: BandKind,
    block_no: int,
    bits: bytes,
    free: int,
) -> None:
    params = {"range_id": range_id, "band": int(band), "block_no": block_no}
    await connection.execute(_WRITE_BLOCK, {**params, "bits": bits, "free": free})


async def held(connection: AsyncConnection, range_id: int, ips: list[str]) -> set[str]:
    """Return which of ``ips`` (canonical text) have an allocation row in the range."""
    if not ips:
        return set()
    rows = await connection.execute(_HELD, {"range_id": range_id, "ips": ips})
    return {str(row[0]) for row in rows}


Counts = tuple[int, int, int]
"""A range's allocated count, how many of them lie in its static band, and its cooling count."""


async def cooling(connection: AsyncConnection, range_id: int) -> list[Any]:
    """Return the cooling addresses of a range, in address order."""
    return list((await connection.execute(_COOLING, {"range_id": range_id})).scalars())


async def lock_count(connection: AsyncConnection, range_id: int) -> Counts | None:
    """Lock a range's count row; return its counts (None: the range is gone)."""
    row = (await connection.execute(_LOCK_COUNT, {"range_id": range_id})).first()
    return (int(row.allocated), int(row.static_allocated), int(row.cooling)) if row else None


async def count_rows(connection: AsyncConnection, range_id: int) -> Counts:
    """Return the counts a range's allocation and cooling rows give."""
    row = (await connection.execute(_COUNT_ROWS, {"range_id": range_id})).one()
    return int(row.allocated), int(row.static_allocated), int(row.cooling)


async def set_count(connection: AsyncConnection, range_id: int, counts: Counts) -> None:
    allocated, static_allocated, cooling = counts
    await connection.execute(
        _SET_COUNT,
        {
            "range_id": range_id,
            "allocated": allocated,
            "static_allocated": static_allocated,
            "cooling": cooling,
        },
    )


async def remove(connection: AsyncConnection, stray: Held) -> int:
    """Delete an allocation row that has no bit (it is not a usable address of its range) and
    append its RELEASED event; return the revision. The caller holds the row lock."""
    document = orjson.dumps(stray.allocation.document()).decode()
    result = await connection.execute(
        _REMOVE, {"ip": str(stray.allocation.ip), "document": document}
    )
    return int(result.scalar_one())
