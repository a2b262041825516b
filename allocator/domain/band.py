"""Bands: the two runs of usable offsets of a range, each a bitmap cut into fixed-size blocks.

A band knows offsets only; the range (``allocator.domain.range``) knows addresses. Block ``b`` of a
band holds the band's offsets ``[b * BLOCK_BITS, (b + 1) * BLOCK_BITS)``, and the last block is
shorter when the band size is not a multiple of ``BLOCK_BITS``. Because each band has blocks of its
own, no block straddles the band boundary: the dynamic search never has to skip static bits.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

BLOCK_BITS = 4096
"""Bits per block: 512 bytes, so a /12 is 256 blocks and a /8 4096."""


class BandKind(enum.IntEnum):
    STATIC = 0
    DYNAMIC = 1


@dataclass(frozen=True, slots=True)
class Band:
    """``size`` consecutive offsets of a range starting at ``first`` (an offset from the network)."""

    kind: BandKind
    first: int
    size: int

    @property
    def last(self) -> int:
        """The last offset of the band (``first - 1`` when the band is empty)."""
        return self.first + self.size - 1

    @property
    def block_count(self) -> int:
        return -(-self.size // BLOCK_BITS)

    def contains(self, offset: int) -> bool:
        return self.first <= offset < self.first + self.size

    def block_bits(self, block_no: int) -> int:
        """Return how many bits block ``block_no`` holds (fewer than BLOCK_BITS only in the last)."""
        if not 0 <= block_no < self.block_count:
            raise IndexError(f"block {block_no} outside band of {self.block_count} blocks")
        return min(BLOCK_BITS, self.size - block_no * BLOCK_BITS)

    def locate(self, offset: int) -> tuple[int, int]:
        """Return ``(block_no, bit)`` of a range offset; raise IndexError outside the band."""
        if not self.contains(offset):
            raise IndexError(f"offset {offset} outside band [{self.first}, {self.last}]")
        return divmod(offset - self.first, BLOCK_BITS)

    def offset(self, block_no: int, bit: int) -> int:
        """Return the range offset of ``bit`` in block ``block_no``; the inverse of ``locate``."""
        if not 0 <= bit < self.block_bits(block_no):
            raise IndexError(f"bit {bit} outside block {block_no}")
        return self.first + block_no * BLOCK_BITS + bit
