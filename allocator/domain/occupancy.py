"""How full a range is, slice by slice: the counts behind the occupancy map of ``ranges show``.

A band's bitmap is its blocks laid end to end (block ``b`` starts at bit ``b * BLOCK_BITS``), so
a slice of the range is a run of bits in one or both bands' bitmaps::

    offset  1            static band            1+S          dynamic band           size
            |-------------------------------------|-------------------------------------|
            |  cell 0  |  cell 1  |  cell 2  |  cell 3  |  cell 4  |  ...   | cell N-1  |

Cells are as equal as integers allow (sizes differ by one at most) and may straddle the band
boundary; each counts the set bits it covers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from allocator.domain.band import BLOCK_BITS, Band
from allocator.domain.range import ServiceRange


@dataclass(frozen=True, slots=True)
class Cell:
    """``size`` consecutive usable offsets from ``first``, of which ``used`` are allocated."""

    first: int
    size: int
    used: int


def count_set(bitmap: bytes, start: int, stop: int) -> int:
    """Return how many of the bits ``start <= n < stop`` of a little-endian bitmap are set.

    Bits beyond the end of ``bitmap`` count as clear.
    """
    if stop <= start:
        return 0
    chunk = int.from_bytes(bitmap[start >> 3 : (stop + 7) >> 3], "little") >> (start & 7)
    return (chunk & ((1 << (stop - start)) - 1)).bit_count()


def band_bitmap(band: Band, blocks: Iterable[tuple[int, bytes]]) -> bytes:
    """Return the whole bitmap of ``band`` from its ``(block_no, bits)``; missing blocks are free.

    Only for bands small enough to hold in memory (eager ranges: at most 2 MiB).
    """
    bitmap = bytearray(-(-band.size // 8))
    stride = BLOCK_BITS // 8
    for block_no, bits in blocks:
        if 0 <= block_no < band.block_count:
            bitmap[block_no * stride : block_no * stride + len(bits)] = bits
    return bytes(bitmap)


def cells(geometry: ServiceRange, bitmaps: tuple[bytes, bytes], count: int) -> list[Cell]:
    """Split the usable offsets of ``geometry`` into ``count`` slices (fewer for a smaller range)
    and count the set bits of each; ``bitmaps`` are the static and dynamic bands' bitmaps."""
    count = max(1, min(count, geometry.size))
    result = []
    for n in range(count):
        first = 1 + n * geometry.size // count
        stop = 1 + (n + 1) * geometry.size // count
        used = 0
        for band, bitmap in zip(geometry.bands, bitmaps, strict=True):
            low, high = max(first, band.first), min(stop, band.first + band.size)
            used += count_set(bitmap, low - band.first, high - band.first)
        result.append(Cell(first, stop - first, used))
    return result
