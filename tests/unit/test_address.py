import netaddr
import pytest
from hypothesis import given
from hypothesis import strategies as st

from allocator.domain.address import Family, family_of, parse_address, parse_network
from allocator.domain.errors import InvalidRequest


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("10.96.0.1", "10.96.0.1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("fd00:0010:0096:0000:0000:0000:0000:000a", "fd00:10:96::a"),
    ],
)
def test_addresses_print_canonically(text: str, canonical: str) -> None:
    assert str(parse_address(text)) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "10.096.0.1",
        "010.96.0.1",
        " 10.96.0.1",
        "10.96.0.1\n",
        "10.96.0.256",
        "10.96.1",
        "0x0a.0.0.1",
        "fe80::1%eth0",
        "10.96.0.1/32",
        "",
        "1" * 100,
        "::g",
    ],
)
def test_malformed_addresses_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_address(text)
    assert refused.value.extensions["errors"][0]["field"] == "ip"


def test_host_bits_name_the_probable_network() -> None:
    with pytest.raises(InvalidRequest, match=r"did you mean 10\.96\.0\.0/12"):
        parse_network("10.96.0.5/12")


@pytest.mark.parametrize(
    "text", ["10.96.0.0", "10.96.0.0/33", "10.96.0.0/-1", "10.96.0.0/012", "::/129", "10.96.0.0/x"]
)
def test_malformed_cidrs_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_network(text)


@pytest.mark.parametrize(
    ("text", "family", "longest"), [("10.96.0.0/33", "IPv4", 32), ("::/129", "IPv6", 128)]
)
def test_a_prefix_too_long_names_the_family(text: str, family: str, longest: int) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_network(text)
    assert refused.value.detail.endswith(f"is too long for {family} (at most /{longest})")


@given(st.integers(0, 2**32 - 1) | st.integers(0, 2**128 - 1))
def test_canonical_text_parses_back_to_the_same_address(value: int) -> None:
    ip = netaddr.IPAddress(value, 4 if value < 2**32 else 6)
    assert parse_address(str(ip)) == ip
    assert family_of(ip) is (Family.IPV4 if ip.version == 4 else Family.IPV6)
