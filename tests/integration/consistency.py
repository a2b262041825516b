"""Reads the whole store and says whether bits, rows, counts and the log agree."""

from __future__ import annotations

import netaddr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.domain.address import parse_network
from allocator.domain.band import BandKind
from allocator.domain.bitmap import set_bits
from allocator.domain.range import ServiceRange


async def assert_consistent(engine: AsyncEngine) -> set[netaddr.IPAddress]:
    """Assert the invariants of the store (a cooling address has its bit and no allocation);
    return the allocated addresses."""
    async with engine.connect() as connection:
        ranges = (
            await connection.execute(
                text("SELECT id, cidr, allocated, static_allocated, cooling FROM ip_range")
            )
        ).all()
        blocks = (
            await connection.execute(
                text("SELECT range_id, band, block_no, bits, free FROM bitmap_block")
            )
        ).all()
        rows = (await connection.execute(text("SELECT ip, range_id FROM allocation"))).all()
        cooling_rows = (
            await connection.execute(text("SELECT ip, range_id FROM cooling_address"))
        ).all()
        revisions = (
            (await connection.execute(text("SELECT revision FROM event ORDER BY revision")))
            .scalars()
            .all()
        )
        head = (await connection.execute(text("SELECT revision FROM log_head"))).scalar_one()
    geometry = {
        r.id: ServiceRange.of(parse_network(str(r.cidr)), check_limits=False) for r in ranges
    }
    from_bits: set[tuple[int, netaddr.IPAddress]] = set()
    for b in blocks:
        g = geometry[b.range_id]
        band = g.band(BandKind(b.band))
        taken = set_bits(b.bits)
        assert all(bit < band.block_bits(b.block_no) for bit in taken)
        assert b.free == band.block_bits(b.block_no) - len(taken), "free count matches the bits"
        from_bits |= {(b.range_id, g.address_at(band.offset(b.block_no, bit))) for bit in taken}
    from_rows = {(r.range_id, netaddr.IPAddress(str(r.ip))) for r in rows}
    cooling = {(r.range_id, netaddr.IPAddress(str(r.ip))) for r in cooling_rows}
    assert not from_rows & cooling, "no address is both allocated and cooling"
    assert from_bits == from_rows | cooling, "every set bit has a row and every row its bit"
    for r in ranges:
        assert r.allocated == sum(1 for range_id, _ in from_rows if range_id == r.id)
        assert r.cooling == sum(1 for range_id, _ in cooling if range_id == r.id)
        in_static = sum(
            1
            for range_id, ip in from_rows
            if range_id == r.id and geometry[r.id].band_of(geometry[r.id].offset_of(ip)).kind == 0
        )
        assert r.static_allocated == in_static, "the static band's count matches its rows"
    assert list(revisions) == list(range(1, head + 1)), "the log is dense up to the head"
    return {ip for _, ip in from_rows}
