"""The transactional bitmap: finding and locking blocks with free bits.

Every function here runs inside the caller's transaction and leaves the block row locked
(``FOR UPDATE``) until that transaction ends, so the bits it returns stay true until commit.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
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


_NOT_HELD = " AND block_no <> ALL(CAST(:held AS bigint[]))"
"""Blocks this transaction already holds: their bits in the database are stale (a batch changes
them in memory and writes them at the end), and ``SKIP LOCKED`` does not skip one's own locks."""

_FIND_FROM = text(
    "SELECT block_no, bits FROM bitmap_block"
    " WHERE range_id = :range_id AND band = :band AND free > 0 AND block_no >= :start"
    f"{_NOT_HELD} ORDER BY block_no LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_FIND_BEFORE = text(
    "SELECT block_no, bits FROM bitmap_block"
    " WHERE range_id = :range_id AND band = :band AND free > 0 AND block_no < :start"
    f"{_NOT_HELD} ORDER BY block_no LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_FIND_WAITING = text(
    "SELECT block_no, bits FROM bitmap_block"
    " WHERE range_id = :range_id AND band = :band AND free > 0"
    f"{_NOT_HELD} ORDER BY block_no LIMIT 1 FOR UPDATE"
)
_MATERIALIZE = text(
    "INSERT INTO bitmap_block (range_id, band, block_no, bits, free)"
    " VALUES (:range_id, :band, :block_no, :bits, :free)"
    " ON CONFLICT DO NOTHING RETURNING block_no"
)
_LOCK = text(
    "SELECT bits FROM bitmap_block"
    " WHERE range_id = :range_id AND band = :band AND block_no = :block_no FOR UPDATE"
)
_FIRST_MISSING = text(
    "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM bitmap_block"
    "   WHERE range_id = :range_id AND band = :band AND block_no = 0) THEN 0"
    " ELSE (SELECT min(b.block_no) + 1 FROM bitmap_block b"
    "   WHERE b.range_id = :range_id AND b.band = :band AND NOT EXISTS ("
    "     SELECT 1 FROM bitmap_block c WHERE c.range_id = b.range_id AND c.band = b.band"
    "     AND c.block_no = b.block_no + 1)) END"
)

_DROP = text("DELETE FROM bitmap_block WHERE range_id = :range_id")
_LOCK_MANY = text(
    "SELECT 1 FROM bitmap_block"
    " JOIN unnest(CAST(:range_ids AS integer[]), CAST(:bands AS smallint[]),"
    "   CAST(:block_nos AS bigint[])) AS k(range_id, band, block_no) USING (range_id, band, block_no)"
    " ORDER BY range_id, band, block_no FOR UPDATE OF bitmap_block"
)

LAZY_PROBES = 8
"""Random new blocks a lazy band tries to create before it waits for a held one."""


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


async def drop_blocks(connection: AsyncConnection, range_id: int) -> None:
    """Delete every block of a range, waiting for allocations in flight to end first.

    The blocks go in scan order, not sorted: that is safe because an allocation holding blocks
    does not wait for another block (a batch takes its blocks with SKIP LOCKED), only for the
    range row, which the caller locks after this. Blocks before the range row is the order allocations take them in, so deleting
    a range cannot deadlock with an allocation from it.
    """
    await connection.execute(_DROP, {"range_id": range_id})


async def lock_blocks(connection: AsyncConnection, keys: list[tuple[int, int, int]]) -> None:
    """Lock the blocks ``(range_id, band, block_no)`` in key order, waiting for their holders.

    A transaction that changes several blocks takes them all, in one order, before its first
    head bump: otherwise it could hold the head while waiting for a block whose holder waits
    for the head.
    """
    if len(keys) < 2:
        return
    range_ids, bands, block_nos = (list(column) for column in zip(*sorted(keys), strict=True))
    await connection.execute(
        _LOCK_MANY, {"range_ids": range_ids, "bands": bands, "block_nos": block_nos}
    )


async def lock_free_block(
    connection: AsyncConnection,
    range_id: int,
    band: Band,
    *,
    eager: bool,
    held: Sequence[int] = (),
    wait: bool = True,
) -> Block | None:
    """Return a locked block of ``band`` with at least one free bit, or None when the band is full.

    It starts at a random block and takes the next one with free bits that no other transaction
    holds (``SKIP LOCKED``), wrapping around, so concurrent allocators spread over the blocks
    instead of queueing on one. A lazy band whose existing blocks are all full or held creates a
    new block at a random place. Only when every block with free bits is held by someone else
    does it wait for one, so a nearly full band is never reported full by mistake.

    ``held`` names blocks of the band this transaction already holds, never to be returned again.
    Without ``wait``, None also means that every block with free bits is held by someone else: a
    transaction that already holds blocks must not wait for more (two such could deadlock).
    """
    if band.size == 0:
        return None
    params = {
        "range_id": range_id,
        "band": int(band.kind),
        "start": random.randrange(band.block_count),
        "held": list(held),
    }
    for query in (_FIND_FROM, _FIND_BEFORE):
        row = (await connection.execute(query, params)).first()
        if row is not None:
            return Block(band, row.block_no, row.bits)
    if not eager:
        for _ in range(LAZY_PROBES):
            block = await _create(connection, range_id, band, random.randrange(band.block_count))
            if block is not None:
                return block
    if not wait:
        return None
    row = (await connection.execute(_FIND_WAITING, params)).first()
    if row is not None:
        return Block(band, row.block_no, row.bits)
    if eager:
        return None
    while (block_no := (await connection.execute(_FIRST_MISSING, params)).scalar()) is not None:
        if block_no >= band.block_count:
            return None
        block = await _create(connection, range_id, band, block_no)
        if block is not None:
            return block
    return None


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
