"""The SQL functions of the write statement agree with the domain's address arithmetic.

Each test checks thousands of random cases in one query, against the Python model."""

import random
from typing import Any

import netaddr
import pytest

from allocator.domain.address import parse_network
from allocator.domain.bitmap import empty_block, is_set, with_bit
from allocator.domain.range import ServiceRange

NETWORKS = ["10.0.0.0/30", "10.0.0.0/24", "10.96.0.0/12", "fd00::/120", "fd00:1::/64", "fd00::/100"]


@pytest.mark.parametrize("cidr", NETWORKS)
async def test_offsets_and_addresses_match_the_domain(pool: Any, cidr: str) -> None:
    geometry = ServiceRange.of(parse_network(cidr))
    rng = random.Random(cidr)
    offsets = [
        1,
        geometry.size,
        geometry.size // 2,
        *(rng.randint(1, geometry.size) for _ in range(500)),
    ]
    if geometry.size > 2**63:  # both halves of a /64: inet - inet is a bigint
        offsets += [2**63 - 1, 2**63, 2**63 + 1, 2**64 - 2]
    addresses = [str(geometry.address_at(o)) for o in offsets]
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT allocator_offset(ip::inet, $2::cidr)::text AS offset,"
            " host(allocator_address($2::cidr, allocator_offset(ip::inet, $2::cidr))) AS back"
            " FROM unnest($1::text[]) AS ip",
            addresses,
            cidr,
        )
        outside = await connection.fetchval(
            "SELECT allocator_offset('192.0.2.1', $1::cidr) IS NULL", cidr
        )
    assert [int(r["offset"]) for r in rows] == offsets
    assert [r["back"] for r in rows] == addresses
    assert outside, "an address outside the network has no offset"


@pytest.mark.parametrize("bits", [1, 7, 8, 9, 16, 238, 256, 4095, 4096])
async def test_the_free_bit_is_the_first_clear_one_from_the_start_byte(
    pool: Any, bits: int
) -> None:
    rng = random.Random(bits)
    blocks, starts, expected = [], [], []
    for _ in range(300):
        fill = rng.choice([0.0, 0.5, 0.99, 1.0])
        block = empty_block(bits)
        for bit in range(bits):
            if rng.random() < fill:
                block = with_bit(block, bit, True)
        if rng.random() < 0.5:  # set padding bits too: they must never be offered either way
            block = block[:-1] + bytes([block[-1] | (0xFF << (bits % 8 or 8)) & 0xFF])
        start = rng.randrange(4096)
        first = (start // 8) % len(block) * 8
        free = [b for b in range(bits) if not is_set(block, b)]
        expected.append(min((b for b in free if b >= first), default=free[0] if free else -1))
        blocks.append(block)
        starts.append(start)
    async with pool.acquire() as connection:
        found = await connection.fetch(
            "SELECT allocator_free_bit(b, $2, s) AS bit"
            " FROM unnest($1::bytea[], $3::integer[]) WITH ORDINALITY AS x(b, s, n) ORDER BY n",
            blocks,
            bits,
            starts,
        )
    assert [r["bit"] for r in found] == expected


@pytest.mark.parametrize("cidr", NETWORKS)
async def test_blocks_and_bits_of_an_address_match_the_domain(pool: Any, cidr: str) -> None:
    """The statement's placement of an address (band, block, bit) is ServiceRange.locate's."""
    geometry = ServiceRange.of(parse_network(cidr))
    rng = random.Random(cidr)
    offsets = [1, geometry.size, *(rng.randint(1, geometry.size) for _ in range(300))]
    if geometry.static_band.size:
        offsets += [geometry.static_band.last, geometry.static_band.last + 1]
    addresses = [geometry.address_at(o) for o in offsets]
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT (p).band, (p).block_no::text AS block, (p).bit FROM ("
            " SELECT allocator_locate(ROW(0, 'r', $2::cidr, 'x', $3::integer, 0, now(), 0,"
            "   $4::numeric, 0, 0, 0, true)::ip_range, ip::inet) AS p"
            " FROM unnest($1::text[]) WITH ORDINALITY AS x(ip, n) ORDER BY n) located",
            [str(a) for a in addresses],
            cidr,
            geometry.static_band.size,
            geometry.size,
        )
    expected = [geometry.locate(netaddr.IPAddress(a)) for a in addresses]
    assert [(r["band"], int(r["block"]), r["bit"]) for r in rows] == [
        (int(band.kind), block, bit) for band, block, bit in expected
    ]
