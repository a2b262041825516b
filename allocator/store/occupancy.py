"""Reading a range's bitmap as a whole: per-block counts, and the bits when a map is drawn."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from allocator.domain.band import BandKind


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """One materialized block: its place, its free count and (when asked for) its bits."""

    band: BandKind
    block_no: int
    free: int
    bits: bytes | None


_COUNTS = text(
    "SELECT band, block_no, free, NULL AS bits FROM bitmap_block"
    " WHERE range_id = :range_id ORDER BY band, block_no"
)
_WITH_BITS = text(
    "SELECT band, block_no, free, bits FROM bitmap_block"
    " WHERE range_id = :range_id ORDER BY band, block_no"
)


async def blocks(
    connection: AsyncConnection, range_id: int, *, with_bits: bool = False
) -> list[StoredBlock]:
    """Return every materialized block of a range in address order (band, then block number).

    An eager range has all its blocks; a lazy one only those created by allocations.
    """
    rows = await connection.execute(_WITH_BITS if with_bits else _COUNTS, {"range_id": range_id})
    return [StoredBlock(BandKind(row.band), row.block_no, row.free, row.bits) for row in rows]
