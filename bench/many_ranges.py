"""Allocation latency as ranges multiply: one range, then a thousand.

The added ranges are small, full, and sort before the one with room, so a request naming no range
must pass all of them to find it: what the choice of a range costs shows, not only how many rows
a lookup reads. They are made by the service's own range creation and filled by SQL that keeps
the store's invariants (``bench.database.fill``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from typing import Any

import asyncpg

from allocator.service import ranges
from allocator.settings import Settings
from allocator.store import migration
from allocator.store.database import create_engine
from bench import database, server
from bench.scenarios import HttpClients, http_allocation, single_client_latency

OPEN = ("open", "10.0.0.0/16")
FULL = ipaddress.ip_network("10.100.0.0/16")
"""Where the full ranges are cut, /30 each (two addresses, no static band)."""

CASES = {"naming it": OPEN[0], "naming none": None}


async def measure(
    base: str | None, ranges_count: int, samples: int, pool_size: int, rng: random.Random
) -> dict[str, Any]:
    """p50 of an allocation naming the open range and naming none, with that range alone and
    with ``ranges_count - 1`` full ranges besides, on a database of its own."""
    async with database.fresh_database(base) as dsn:
        engine = create_engine(dsn, Settings(database_url=dsn, pool_size=pool_size))
        admin = await asyncpg.connect(dsn)
        try:
            await migration.upgrade(engine)
            await ranges.create_range(engine, *OPEN)
            with server.running(dsn, ALLOCATOR_POOL_SIZE=str(pool_size)) as srv:
                clients = HttpClients(srv.url)
                try:
                    warm = http_allocation(clients, None, "warm", release=True)
                    for n in range(min(samples, 50)):
                        await warm(0, n)
                    latency = {}
                    for case, name in CASES.items():
                        latency[f"1 range, {case}"] = await single_client_latency(
                            http_allocation(clients, name, f"one-{case[-4:]}", release=True),
                            samples,
                        )
                    began = time.perf_counter()
                    await _add_full_ranges(engine, admin, ranges_count - 1, rng)
                    setup = time.perf_counter() - began
                    for case, name in CASES.items():
                        latency[f"{ranges_count} ranges, {case}"] = await single_client_latency(
                            http_allocation(clients, name, f"many-{case[-4:]}", release=True),
                            samples,
                        )
                finally:
                    await clients.close()
        finally:
            await admin.close()
            await engine.dispose()
    return {"ranges": ranges_count, "setup_seconds": round(setup, 2), "latency": latency}


async def _add_full_ranges(
    engine: Any, admin: asyncpg.Connection, count: int, rng: random.Random
) -> None:
    names = [f"full-{n:04d}" for n in range(count)]
    cidrs = list(FULL.subnets(new_prefix=30))[:count]
    at_once = asyncio.Semaphore(4)

    async def create(name: str, cidr: object) -> None:
        async with at_once:
            await ranges.create_range(engine, name, str(cidr))

    await asyncio.gather(*(create(n, c) for n, c in zip(names, cidrs, strict=True)))
    await database.fill(admin, names, 1.0, rng)
    await database.vacuum(admin)
