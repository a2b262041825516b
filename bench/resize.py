"""What a resize costs: how long growing a full-ish range takes, and how long allocations in that
range wait meanwhile.

A /16 holding 50,000 allocations grows to a /15 (eager blocks rebuilt: 33 of them), and an IPv6
/112 holding 10,000 grows to a /100 (lazy: only the blocks that hold addresses). While each
resize runs, ``CLIENTS`` clients allocate from that range by name through the service layer, one
request after another; an allocation that arrives during the resize waits for it. The figures:
the resize's duration (the PATCH's transaction), the allocations' p50 before it, and how long
those that overlapped the resize took (p50 and the longest).

    python -m bench.resize [--quick] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from typing import Any

import asyncpg
import orjson

from allocator.domain.address import parse_network
from allocator.domain.range import ServiceRange
from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, Allocator
from allocator.settings import Settings
from allocator.store import migration
from allocator.store.database import create_engine, create_pool
from bench import database

CLIENTS = 8
CASES = {
    "/16 with 50,000 allocations to a /15": ("10.80.0.0/16", "10.80.0.0/15", 50_000),
    "IPv6 /112 with 10,000 allocations to a /100 (lazy)": (
        "fd00:80::/112",
        "fd00:80::/100",
        10_000,
    ),
}
QUICK_CASES = {
    "/20 with 2,000 allocations to a /19": ("10.80.0.0/20", "10.80.0.0/19", 2_000),
    "IPv6 /116 with 1,000 allocations to a /100 (lazy)": ("fd00:80::/116", "fd00:80::/100", 1_000),
}


async def measure(base: str | None, quick: bool, pool_size: int = 8) -> dict[str, Any]:
    """Return the figures of each case, in a database of their own."""
    cases = QUICK_CASES if quick else CASES
    settle = 0.3 if quick else 1.0
    rng = random.Random(7)
    out: dict[str, Any] = {"clients": CLIENTS}
    async with database.fresh_database(base) as dsn:
        settings = Settings(database_url=dsn, pool_size=pool_size)
        engine = create_engine(dsn, settings)
        pool = await create_pool(dsn, settings)
        admin = await asyncpg.connect(dsn)
        try:
            await migration.upgrade(engine)
            allocator = Allocator(pool)
            for n, (label, (old, new, held)) in enumerate(cases.items()):
                name = f"resize-{n}"
                await ranges.create_range(engine, name, old)
                size = ServiceRange.of(parse_network(old)).size
                await database.fill(admin, name, held / size, rng)
                await database.vacuum(admin)
                out[label] = await _one(engine, allocator, name, new, settle)
        finally:
            await admin.close()
            await pool.close()
            await engine.dispose()
    return out


async def _one(
    engine: Any, allocator: Allocator, name: str, cidr: str, settle: float
) -> dict[str, Any]:
    spans: list[tuple[float, float]] = []
    stop = asyncio.Event()

    async def client(c: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.perf_counter()
            await allocator.allocate(AllocationRequest(owner=f"bench-{c}-{n}", range=name))
            spans.append((started, time.perf_counter()))

    clients = [asyncio.create_task(client(c)) for c in range(CLIENTS)]
    try:
        await asyncio.sleep(settle)
        began = time.perf_counter()
        changed = orjson.loads(
            await ranges.change_range(engine, name, ranges.RangeChange(cidr=cidr))
        )
        ended = time.perf_counter()
        await asyncio.sleep(settle)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    before = [e - s for s, e in spans if e < began]
    during = [e - s for s, e in spans if s < ended and e > began]
    return {
        "cidr": changed["cidr"],
        "allocated": changed["allocated"],
        "resize_ms": (ended - began) * 1000,
        "allocation_p50_ms_before": statistics.median(before) * 1000 if before else None,
        "waiting_allocations": len(during),
        "waited_p50_ms": statistics.median(during) * 1000 if during else None,
        "waited_max_ms": max(during) * 1000 if during else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.resize", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    figures = asyncio.run(measure(database.base_url(args.database_url), args.quick))
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
