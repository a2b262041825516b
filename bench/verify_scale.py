"""How long ``verify`` takes on a big range: a /12 filled to a fifth (about 210k allocations),
checked whole, then with 100 leaked bits found and repaired.

    ALLOCATOR_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test python -m bench.verify_scale

Fills the store directly (bits, rows and counts written consistently by SQL), so the figure is
the check's own cost, not the allocations'.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import text

from allocator.domain.band import BLOCK_BITS, BandKind
from allocator.service import ranges
from allocator.service.verify import verify
from allocator.settings import Settings
from allocator.store import migration
from allocator.store.database import create_engine
from tests.database import fresh_database

CIDR = "10.0.0.0/12"
EVERY = 5


async def measure(url: str) -> None:
    engine = create_engine(url, Settings(database_url=url))
    try:
        await migration.upgrade(engine)
        created = await ranges.create_range(engine, "big", CIDR)
        geometry = created.geometry
        band = geometry.dynamic_band
        offsets = list(range(band.first, band.first + band.size, EVERY))
        blocks: dict[int, bytearray] = {}
        for offset in offsets:
            block_no, bit = band.locate(offset)
            bits = blocks.setdefault(block_no, bytearray(-(-band.block_bits(block_no) // 8)))
            bits[bit >> 3] |= 1 << (bit & 7)
        async with engine.begin() as connection:
            for block_no, bits in blocks.items():
                used = sum(b.bit_count() for b in bits)
                await connection.execute(
                    text(
                        "UPDATE bitmap_block SET bits = :bits, free = :free WHERE range_id = :id"
                        " AND band = :band AND block_no = :block_no"
                    ),
                    {
                        "bits": bytes(bits),
                        "free": band.block_bits(block_no) - used,
                        "id": created.id,
                        "band": int(BandKind.DYNAMIC),
                        "block_no": block_no,
                    },
                )
            ips = [str(geometry.address_at(o)) for o in offsets]
            for start in range(0, len(ips), 50_000):
                await connection.execute(
                    text(
                        "INSERT INTO allocation (ip, family, range_id, owner, created_at, revision)"
                        " SELECT CAST(x AS inet), 'IPv4', :id, 'o-' || x, now(), 1"
                        " FROM unnest(CAST(:ips AS text[])) AS x"
                    ),
                    {"id": created.id, "ips": ips[start : start + 50_000]},
                )
            await connection.execute(
                text("UPDATE ip_range SET allocated = :n WHERE id = :id"),
                {"n": len(ips), "id": created.id},
            )
        started = time.perf_counter()
        report = await verify(engine)
        seconds = time.perf_counter() - started
        assert report.consistent, report.counts()
        print(
            f"check: {report.blocks} blocks, {report.allocations} allocations in {seconds:.2f} s"
            f" ({report.allocations / seconds:,.0f} allocations/s)"
        )
        async with engine.begin() as connection:  # 100 leaks: bits set past the filled ones
            await connection.execute(
                text(
                    "UPDATE bitmap_block SET bits = set_bit(bits, 1, 1)"
                    " WHERE range_id = :id AND band = 1 AND block_no < 100"
                ),
                {"id": created.id},
            )
        started = time.perf_counter()
        repaired = await verify(engine, repair=True)
        seconds = time.perf_counter() - started
        print(
            f"check and repair: {repaired.counts()} in {seconds:.2f} s;"
            f" unresolved {len(repaired.unresolved)}"
        )
        assert (await verify(engine)).consistent
    finally:
        await engine.dispose()


def main() -> None:
    assert BLOCK_BITS == 4096
    with fresh_database() as url:
        asyncio.run(measure(url))


if __name__ == "__main__":
    main()
