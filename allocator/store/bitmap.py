"""The transactional bitmap's blocks outside the write path: creating and dropping a range's
blocks, and locking one for verify's repairs. (Allocations find and lock blocks inside the write
statement, ``allocator_pick`` in migration 0002.)"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from allocator.domain.band import Band
from allocator.domain.bitmap import empty_block


class ConcurrentChange(Exception):
    """A row this transaction relied on was changed by a concurrent one: run the use case again
    (it then sees the change and answers for it)."""


@dataclass(frozen=True, slots=True)
class Block:
    """A locked block: its place in the band and its bits as read under the lock."""

    band: Band
    block_no: int
    bits: bytes


_MATERIALIZE = text(
    "INSERT INTO bitmap_block (range_id, band, block_no, bits, free)"
    " VALUES (:range_id, :band, :block_no, :bits, :free)"
    " ON CONFLICT DO NOTHING RETURNING block_no"
)
_LOCK = text(
    "SELECT bits FROM bitmap_block"
    " WHERE range_id = :range_id AND band = :band AND block_no = :block_no FOR UPDATE"
)
_DROP = text("DELETE FROM bitmap_block WHERE range_id = :range_id")
_DROP_ONE = text(
    "DELETE FROM bitmap_block WHERE range_id = :range_id AND band = :band AND block_no = :block_no"
)
_CREATE_ALL = text(
    "INSERT INTO bitmap_block (range_id, band, block_no, bits, free)"
    " SELECT :range_id, :band, n,"
    "   CASE WHEN n < :last THEN CAST(:full_bits AS bytea) ELSE CAST(:tail_bits AS bytea) END,"
    "   CASE WHEN n < :last THEN CAST(:full_free AS integer) ELSE CAST(:tail_free AS integer) END"
    " FROM generate_series(0, :last) AS n"
)


async def create_all_blocks(connection: AsyncConnection, range_id: int, band: Band) -> None:
    """Create every block of ``band``, all bits free."""
    if band.size == 0:
        return
    last = band.block_count - 1
    await connection.execute(
        _CREATE_ALL,
        {
            "range_id": range_id,
            "band": int(band.kind),
            "last": last,
            "full_bits": empty_block(band.block_bits(0)),
            "full_free": band.block_bits(0),
            "tail_bits": empty_block(band.block_bits(last)),
            "tail_free": band.block_bits(last),
        },
    )


# Every block of an eager range and the blocks holding taken addresses (allocated or cooling)
# of a lazy one, as the range's row describes it now. A block's bits are gathered as a bit
# string by bit_or (in C: a per-address aggregate in SQL costs ten times more); varbit_send gives
# its bytes, whose bits run from the most significant one, so bit k of a block (the k % 8-th
# from the least significant of byte k / 8, as set_bit counts) is string position k with its
# three low bits reversed. The places are allocator_locate's, spelled out: called per address
# it costs 17 us, ten times the rest of the statement. (An offset is inet - inet where that
# bigint holds it, allocator_offset only for the far half of a /64.)
_BUILD = text(
    """
WITH offsets AS MATERIALIZED (
    SELECT CASE WHEN family(r.cidr) = 4 OR masklen(r.cidr) > 65
                THEN (t.ip - network(r.cidr))::numeric
                ELSE allocator_offset(t.ip, r.cidr) END AS place,
           r.static_size
    FROM ip_range r
    CROSS JOIN LATERAL (SELECT a.ip FROM allocation a WHERE a.range_id = r.id
                        UNION ALL
                        SELECT c.ip FROM cooling_address c WHERE c.range_id = r.id) AS t
    WHERE r.id = :range_id
),
placed AS MATERIALIZED (
    SELECT b.band, floor(b.n / 4096)::bigint AS block_no, (b.n % 4096)::integer AS bit
    FROM offsets o
    CROSS JOIN LATERAL (
        SELECT CASE WHEN o.place <= o.static_size THEN 0 ELSE 1 END::smallint AS band,
               o.place - CASE WHEN o.place <= o.static_size THEN 1 ELSE 1 + o.static_size END AS n
    ) AS b
),
filled AS (
    SELECT band, block_no,
           bit_or(set_bit(B'0'::bit(4096), (bit & ~7) | (7 - (bit & 7)), 1)) AS bits,
           count(*) AS taken
    FROM placed
    GROUP BY band, block_no
),
wanted AS (
    SELECT b.band, n AS block_no
    FROM ip_range r,
         (VALUES (0::smallint), (1::smallint)) AS b(band),
         generate_series(0, ceil(allocator_band_size(r, b.band) / 4096)::bigint - 1) AS n
    WHERE r.id = :range_id
      AND allocator_eager(r)
    UNION
    SELECT band, block_no FROM filled
)
INSERT INTO bitmap_block (range_id, band, block_no, bits, free)
SELECT r.id, w.band, w.block_no,
       CASE WHEN f.bits IS NULL THEN allocator_empty_block(k.nbits)
            ELSE substring(varbit_send(f.bits) FROM 5 FOR (k.nbits + 7) / 8) END,
       k.nbits - coalesce(f.taken, 0)
FROM ip_range r
CROSS JOIN wanted w
CROSS JOIN LATERAL (SELECT allocator_block_bits(r, w.band, w.block_no) AS nbits) AS k
LEFT JOIN filled f ON f.band = w.band AND f.block_no = w.block_no
WHERE r.id = :range_id
"""
)


async def build_blocks(connection: AsyncConnection, range_id: int) -> None:
    """Create the blocks of a range that has none, for its geometry as stored, with a set bit
    for each of its allocated and cooling addresses."""
    await connection.execute(_BUILD, {"range_id": range_id})


async def drop_blocks(connection: AsyncConnection, range_id: int) -> None:
    """Delete every block of a range, waiting for allocations in flight to end first.

    The blocks go in scan order, not sorted: that is safe because an allocation holding blocks
    waits for no other block of a range (a group takes more blocks only with SKIP LOCKED), only
    for the range row, which the caller locks after this. Blocks before the range row is the
    order allocations take them in, so deleting a range cannot deadlock with an allocation.
    """
    await connection.execute(_DROP, {"range_id": range_id})


async def drop_block(connection: AsyncConnection, range_id: int, band: int, block_no: int) -> None:
    """Delete one block (one no band of the range's geometry has)."""
    await connection.execute(_DROP_ONE, {"range_id": range_id, "band": band, "block_no": block_no})


async def lock_block(
    connection: AsyncConnection, range_id: int, band: Band, block_no: int, *, eager: bool
) -> Block:
    """Return block ``block_no`` of ``band``, locked, waiting for other holders; create it if lazy."""
    params = {"range_id": range_id, "band": int(band.kind), "block_no": block_no}
    if not eager:
        await _create(connection, range_id, band, block_no)
    bits = (await connection.execute(_LOCK, params)).scalar()
    if bits is None:  # the range was deleted while this transaction waited for the block
        raise ConcurrentChange(f"block {block_no} of range {range_id} is gone")
    return Block(band, block_no, bits)


async def _create(
    connection: AsyncConnection, range_id: int, band: Band, block_no: int
) -> Block | None:
    """Create block ``block_no`` if missing; return it (locked: it is ours) when this did."""
    bits = band.block_bits(block_no)
    result = await connection.execute(
        _MATERIALIZE,
        {
            "range_id": range_id,
            "band": int(band.kind),
            "block_no": block_no,
            "bits": empty_block(bits),
            "free": bits,
        },
    )
    return Block(band, block_no, empty_block(bits)) if result.first() is not None else None
