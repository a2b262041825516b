import netaddr
import pytest
from hypothesis import given
from hypothesis import strategies as st

from allocator.domain.address import parse_network
from allocator.domain.band import BLOCK_BITS, BandKind
from allocator.domain.errors import InvalidRequest, IPNotInRange
from allocator.domain.range import ServiceRange, static_band_size, validate_name


@pytest.mark.parametrize(
    ("total", "size"),
    [
        (4, 0),
        (16, 0),
        (32, 16),
        (64, 16),
        (256, 16),
        (257, 16),
        (511, 31),
        (512, 32),
        (1024, 64),
        (4095, 255),
        (4096, 256),
        (8192, 256),
        (2**20, 256),
        (2**64, 256),
    ],
)
def test_static_band_formula_at_its_boundaries(total: int, size: int) -> None:
    assert static_band_size(total) == size


@pytest.mark.parametrize(
    ("cidr", "size", "static"),
    [
        ("10.0.0.0/28", 14, 0),
        ("10.0.0.0/27", 30, 16),
        ("10.0.0.0/24", 254, 16),
        ("10.0.0.0/22", 1022, 64),
        ("10.0.0.0/16", 65534, 256),
        ("10.96.0.0/12", 1048574, 256),
        ("fd00::/120", 255, 16),
        ("fd00::/64", 2**64 - 1, 256),
        ("fd00::/126", 3, 0),
    ],
)
def test_sizes_and_static_bands(cidr: str, size: int, static: int) -> None:
    r = ServiceRange.of(parse_network(cidr))
    assert (r.size, r.static_band.size) == (size, static)
    assert r.static_band.first == 1
    assert r.dynamic_band.first == 1 + static
    assert r.static_band.size + r.dynamic_band.size == r.size


def test_network_and_ipv4_broadcast_are_never_usable() -> None:
    r = ServiceRange.of(parse_network("10.0.0.0/24"))
    with pytest.raises(IPNotInRange, match="network"):
        r.offset_of(netaddr.IPAddress("10.0.0.0"))
    with pytest.raises(IPNotInRange, match="broadcast"):
        r.offset_of(netaddr.IPAddress("10.0.0.255"))
    with pytest.raises(IPNotInRange):
        r.offset_of(netaddr.IPAddress("10.0.1.0"))
    v6 = ServiceRange.of(parse_network("fd00::/120"))
    assert v6.offset_of(netaddr.IPAddress("fd00::ff")) == 255


@pytest.mark.parametrize("cidr", ["10.0.0.0/7", "10.0.0.0/31", "fd00::/63", "fd00::/127"])
def test_prefix_lengths_out_of_limits_are_refused(cidr: str) -> None:
    with pytest.raises(InvalidRequest, match="prefix length"):
        ServiceRange.of(parse_network(cidr))


@pytest.mark.parametrize("name", ["a", "default-ipv4", "0", "a" * 63])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "A", "a_b", "a" * 64, "a.b"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidRequest):
        validate_name(name)


ranges = st.one_of(
    st.builds(
        lambda n, p: netaddr.IPNetwork((n, p), 4).cidr,
        st.integers(0, 2**32 - 1),
        st.integers(8, 30),
    ),
    st.builds(
        lambda n, p: netaddr.IPNetwork((n, p), 6).cidr,
        st.integers(0, 2**128 - 1),
        st.integers(64, 126),
    ),
)


@given(ranges, st.data())
def test_offsets_and_addresses_round_trip(network: netaddr.IPNetwork, data: st.DataObject) -> None:
    r = ServiceRange.of(network)
    offset = data.draw(st.integers(1, r.size))
    ip = r.address_at(offset)
    assert ip in network
    assert r.offset_of(ip) == offset
    band = r.band_of(offset)
    assert band.kind is (BandKind.STATIC if offset <= r.static_band.size else BandKind.DYNAMIC)
    block_no, bit = band.locate(offset)
    assert 0 <= bit < BLOCK_BITS
    assert band.offset(block_no, bit) == offset


@given(ranges)
def test_blocks_cover_each_band_exactly(network: netaddr.IPNetwork) -> None:
    r = ServiceRange.of(network)
    for band in r.bands:
        if band.size == 0:
            assert band.block_count == 0
            continue
        last = band.block_count - 1
        assert last * BLOCK_BITS + band.block_bits(last) == band.size
        assert 0 < band.block_bits(last) <= BLOCK_BITS
