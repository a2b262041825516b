"""The slice counts behind the occupancy map."""

import netaddr
from hypothesis import given
from hypothesis import strategies as st

from allocator.domain.bitmap import with_bit
from allocator.domain.occupancy import band_bitmap, cells, count_set
from allocator.domain.range import ServiceRange


def test_count_set_counts_only_the_bits_asked_for() -> None:
    bitmap = bytes([0b1010_1010, 0xFF, 0x01])
    assert count_set(bitmap, 0, 8) == 4
    assert count_set(bitmap, 1, 2) == 1
    assert count_set(bitmap, 3, 17) == 3 + 8 + 1
    assert count_set(bitmap, 17, 40) == 0, "bits past the end are clear"
    assert count_set(bitmap, 5, 5) == 0


@given(
    prefix=st.integers(min_value=20, max_value=30),
    taken=st.sets(st.integers(min_value=0, max_value=5000), max_size=60),
    count=st.integers(min_value=1, max_value=300),
)
def test_cells_cover_the_range_and_count_every_address(
    prefix: int, taken: set[int], count: int
) -> None:
    geometry = ServiceRange.of(netaddr.IPNetwork(f"10.0.0.0/{prefix}"))
    offsets = {1 + t % geometry.size for t in taken}
    blocks: dict[tuple[int, int], bytes] = {}
    for offset in offsets:
        band = geometry.band_of(offset)
        block_no, bit = band.locate(offset)
        key = (int(band.kind), block_no)
        current = blocks.get(key, bytes(-(-band.block_bits(block_no) // 8)))
        blocks[key] = with_bit(current, bit, True)
    bitmaps = tuple(
        band_bitmap(band, ((n, bits) for (kind, n), bits in blocks.items() if kind == band.kind))
        for band in geometry.bands
    )
    slices = cells(geometry, (bitmaps[0], bitmaps[1]), count)
    assert len(slices) == min(count, geometry.size)
    assert sum(c.size for c in slices) == geometry.size
    assert [c.first for c in slices] == sorted(c.first for c in slices)
    for cell in slices:
        assert cell.used == sum(1 for o in offsets if cell.first <= o < cell.first + cell.size)
