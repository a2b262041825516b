"""Bit operations on one block of a band's bitmap.

A block is stored as bytes in the order Postgres' ``get_bit``/``set_bit`` use on ``bytea``: bit
``n`` is bit ``n % 8`` (least significant first) of byte ``n // 8``. That is exactly a little-endian
integer. (The search for a free bit runs in the database: ``allocator_free_bit``, migration 0002.)
"""

from __future__ import annotations


def empty_block(bits: int) -> bytes:
    """Return the stored form of a block of ``bits`` free bits."""
    return bytes(-(-bits // 8))


def is_set(block: bytes, bit: int) -> bool:
    return bool(block[bit >> 3] >> (bit & 7) & 1)


def set_bits(block: bytes) -> list[int]:
    """Return the numbers of the set bits of ``block``, in increasing order."""
    value = int.from_bytes(block, "little")
    found = []
    while value:
        low = value & -value
        found.append(low.bit_length() - 1)
        value ^= low
    return found


def with_bit(block: bytes, bit: int, value: bool) -> bytes:
    """Return ``block`` with ``bit`` set to ``value``."""
    changed = bytearray(block)
    if value:
        changed[bit >> 3] |= 1 << (bit & 7)
    else:
        changed[bit >> 3] &= ~(1 << (bit & 7)) & 0xFF
    return bytes(changed)
