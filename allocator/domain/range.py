"""A service-cluster-ip-range: one CIDR, its usable offsets and their two bands.

Offsets count from the network address. For a /28 (16 addresses, static band 0)::

    offset  0         1                                   14        15
            +---------+-----------------------------------+---------+
            | network |  dynamic band: offsets 1..14       |  bcast  |
            +---------+-----------------------------------+---------+

and for a /24 (static band 16, KEP-3070)::

    offset  0         1 .. 16              17 .. 254               255
            +---------+--------------------+-----------------------+-------+
            | network | static band (16)   | dynamic band (238)    | bcast |
            +---------+--------------------+-----------------------+-------+

The network address is never handed out: it is not a host address, and a Service holding it could
be mistaken for the whole range. IPv4 also keeps its broadcast address back; IPv6 has no broadcast,
so its last address is usable. The static band is kept for user-requested IPs: dynamic allocation
takes from it only when the dynamic band is full, so a user who picks an address in it rarely finds
it taken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import netaddr

from allocator.domain.address import Family, family_of, format_network
from allocator.domain.band import Band, BandKind
from allocator.domain.errors import InvalidRequest, IPNotInRange

PREFIX_LIMITS = {Family.IPV4: (8, 30), Family.IPV6: (64, 126)}
"""Accepted prefix lengths per family, inclusive."""

EAGER_LIMIT = 1 << 24
"""Ranges of at most this many addresses get every block at creation (a /8 is 4096 blocks).

Larger ranges (IPv6 only) are too big ever to become dense, so their blocks are created on first use.
"""

NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def static_band_size(total: int) -> int:
    """Return the static band size for a CIDR of ``total`` addresses: ``min(max(16, total/16), 256)``,
    or 0 when ``total <= 16`` (KEP-3070)."""
    if total <= 16:
        return 0
    return min(max(16, total // 16), 256)


def validate_name(name: str) -> str:
    """Return ``name`` if it is 1-63 characters of [a-z0-9-], alphanumeric at both ends."""
    if not NAME_PATTERN.match(name):
        raise InvalidRequest(
            f"range name {name!r} must be 1-63 characters of [a-z0-9-], "
            "starting and ending with a letter or digit",
            field="name",
        )
    return name


MAX_RELEASE_COOLDOWN_SECONDS = 86_400
"""A released address cools down for at most a day before anyone may take it again."""


def validate_release_cooldown(seconds: int) -> int:
    """Return ``seconds`` if it is a whole number of seconds from 0 to a day."""
    if isinstance(seconds, bool) or not 0 <= seconds <= MAX_RELEASE_COOLDOWN_SECONDS:
        raise InvalidRequest(
            f"release_cooldown_seconds must be an integer from 0 to"
            f" {MAX_RELEASE_COOLDOWN_SECONDS}, not {seconds!r}",
            field="release_cooldown_seconds",
        )
    return seconds


@dataclass(frozen=True, slots=True)
class ServiceRange:
    """The address geometry of one range; build it with ``ServiceRange.of``."""

    network: netaddr.IPNetwork
    family: Family
    total: int
    size: int
    static_band: Band
    dynamic_band: Band

    @classmethod
    def of(cls, network: netaddr.IPNetwork, *, check_limits: bool = True) -> ServiceRange:
        """Return the range of ``network``; raise InvalidRequest for a prefix length out of limits."""
        family = family_of(network)
        low, high = PREFIX_LIMITS[family]
        if check_limits and not low <= network.prefixlen <= high:
            raise InvalidRequest(
                f"{format_network(network)}: {family} ranges must have a prefix length "
                f"between /{low} and /{high}",
                field="cidr",
            )
        total = 1 << (family.bits - network.prefixlen)
        size = total - 2 if family is Family.IPV4 else total - 1
        static = static_band_size(total)
        return cls(
            network=network,
            family=family,
            total=total,
            size=size,
            static_band=Band(BandKind.STATIC, 1, static),
            dynamic_band=Band(BandKind.DYNAMIC, 1 + static, size - static),
        )

    @property
    def cidr(self) -> str:
        return format_network(self.network)

    @property
    def eager(self) -> bool:
        """Whether all blocks are created with the range (see EAGER_LIMIT)."""
        return self.total <= EAGER_LIMIT

    @property
    def bands(self) -> tuple[Band, Band]:
        return (self.static_band, self.dynamic_band)

    def band(self, kind: BandKind) -> Band:
        return self.bands[kind]

    def contains(self, ip: netaddr.IPAddress) -> bool:
        return ip.version == self.network.version and ip in self.network

    def offset_of(self, ip: netaddr.IPAddress) -> int:
        """Return the offset of a usable address; raise IPNotInRange for any other address."""
        if not self.contains(ip):
            raise IPNotInRange(f"{ip} is not in range {self.cidr}")
        offset = int(ip) - int(self.network.network)
        if not 1 <= offset <= self.size:
            what = "network" if offset == 0 else "broadcast"
            raise IPNotInRange(f"{ip} is the {what} address of {self.cidr} and is never allocated")
        return offset

    def address_at(self, offset: int) -> netaddr.IPAddress:
        """Return the address at a usable offset; raise IndexError for any other offset."""
        if not 1 <= offset <= self.size:
            raise IndexError(f"offset {offset} is not usable in {self.cidr}")
        return netaddr.IPAddress(int(self.network.network) + offset, self.network.version)

    def band_of(self, offset: int) -> Band:
        """Return the band holding a usable offset."""
        return self.static_band if self.static_band.contains(offset) else self.dynamic_band

    def resized(self, network: netaddr.IPNetwork) -> ServiceRange:
        """Return the range grown to ``network`` (which contains it) or shrunk to it (which it
        contains); raise InvalidRequest for another family, prefix length out of limits, or a
        network that neither contains nor lies inside this one."""
        if network.version != self.network.version:
            raise InvalidRequest(
                f"{format_network(network)} is {family_of(network)}, range {self.cidr} is"
                f" {self.family}",
                field="cidr",
            )
        resized = ServiceRange.of(network)
        if network not in self.network and self.network not in network:
            raise InvalidRequest(
                f"{resized.cidr} neither contains {self.cidr} nor lies inside it: a range grows"
                " to a CIDR that contains it or shrinks to one it contains",
                field="cidr",
            )
        return resized

    def locate(self, ip: netaddr.IPAddress) -> tuple[Band, int, int]:
        """Return the band, block number and bit of a usable address; raise IPNotInRange for
        any other address."""
        offset = self.offset_of(ip)
        band = self.band_of(offset)
        block_no, bit = band.locate(offset)
        return band, block_no, bit
