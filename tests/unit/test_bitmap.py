import pytest
from hypothesis import given
from hypothesis import strategies as st

from allocator.domain.bitmap import empty_block, set_bits, with_bit


@st.composite
def blocks(draw: st.DrawFn) -> tuple[bytes, int]:
    bits = draw(st.integers(1, 300))
    taken = draw(st.sets(st.integers(0, bits - 1)))
    block = empty_block(bits)
    for bit in taken:
        block = with_bit(block, bit, True)
    return block, bits


@given(blocks(), st.data())
def test_setting_and_clearing_touch_one_bit(sample: tuple[bytes, int], data: st.DataObject) -> None:
    block, bits = sample
    bit = data.draw(st.integers(0, bits - 1))
    before = set(set_bits(block))
    assert set(set_bits(with_bit(block, bit, True))) == before | {bit}
    assert set(set_bits(with_bit(block, bit, False))) == before - {bit}


@pytest.mark.parametrize("bit", [0, 7, 8, 4095])
def test_layout_matches_postgres_set_bit(bit: int) -> None:
    # Postgres set_bit(bytea, n, 1) sets bit n % 8 (least significant first) of byte n // 8.
    block = with_bit(empty_block(4096), bit, True)
    assert block[bit // 8] == 1 << (bit % 8)
