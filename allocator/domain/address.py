"""Parsing and printing of addresses and CIDRs, strictly.

Leading zeros (``10.096.0.1``), zone indices (``fe80::1%eth0``), surrounding white space and the
abbreviated IPv4 forms that ``inet_aton`` accepts are all refused: an address that two programs
could read differently must not reach the allocator. Output is canonical: dotted quad for IPv4,
RFC 5952 (compressed, lowercase) for IPv6.
"""

from __future__ import annotations

import enum

import netaddr

from allocator.domain.errors import InvalidRequest


class Family(enum.StrEnum):
    IPV4 = "IPv4"
    IPV6 = "IPv6"

    @property
    def bits(self) -> int:
        return 32 if self is Family.IPV4 else 128

    @classmethod
    def of_version(cls, version: int) -> Family:
        return cls.IPV4 if version == 4 else cls.IPV6


def parse_address(text: str, *, field: str = "ip") -> netaddr.IPAddress:
    """Return the address ``text`` names; raise InvalidRequest if it is not exactly one address."""
    if not text or text != text.strip() or len(text) > 45 or "/" in text:
        raise InvalidRequest(f"{text!r} is not a valid IP address", field=field)
    try:
        return netaddr.IPAddress(text, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise InvalidRequest(f"{text!r} is not a valid IP address", field=field) from None


def parse_network(text: str, *, field: str = "cidr") -> netaddr.IPNetwork:
    """Return the network ``text`` names; raise InvalidRequest for bad syntax or host bits set.

    A CIDR with host bits set (``10.96.0.5/12``) is refused rather than silently truncated,
    naming the network that was probably meant.
    """
    address, slash, length = text.partition("/")
    if not slash or not length.isdigit() or length != str(int(length)):
        raise InvalidRequest(f"{text!r} is not a CIDR (expected ADDRESS/PREFIX)", field=field)
    ip = parse_address(address, field=field)
    prefix_len = int(length)
    family = Family.of_version(ip.version)
    if prefix_len > family.bits:
        raise InvalidRequest(
            f"prefix length /{prefix_len} is too long for {family} (at most /{family.bits})",
            field=field,
        )
    network = netaddr.IPNetwork((int(ip), prefix_len), version=ip.version)
    if network.network != ip:
        raise InvalidRequest(
            f"{text!r} has host bits set; did you mean {format_network(network.cidr)}?",
            field=field,
        )
    return network.cidr


def format_address(ip: netaddr.IPAddress) -> str:
    """Return the canonical text of ``ip``."""
    return str(ip)


def format_network(network: netaddr.IPNetwork) -> str:
    return f"{network.network}/{network.prefixlen}"


def family_of(ip: netaddr.IPAddress | netaddr.IPNetwork) -> Family:
    return Family.of_version(ip.version)
