"""Two server processes against one database, under many clients: a replica killed mid-load, and
a stress run on small ranges. Afterwards the clients' own records, the allocation table, the
bitmap, the counts and the event log must all agree, and no address may ever have been
acknowledged to two owners at once.
"""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.client.watch import AsyncWatch
from bench.server import running
from tests.e2e.load import (
    Ledger,
    Replicas,
    check_acknowledged_kept,
    check_no_double_holding,
    client,
    replay_event_log,
)
from tests.integration.consistency import assert_consistent

RANGES = (("small-a", "10.1.0.0/26"), ("small-b", "10.2.0.0/27"))
STATIC_POOL = [f"10.1.0.{n}" for n in range(1, 17)] + [f"10.2.0.{n}" for n in range(1, 17)]


async def create_ranges(http: httpx.AsyncClient, url: str) -> None:
    for name, cidr in RANGES:
        response = await http.post(f"{url}/v1/ranges", json={"name": name, "cidr": cidr})
        assert response.status_code == 201, response.text


async def check_store(engine: AsyncEngine, ledger: Ledger) -> None:
    await assert_consistent(engine)
    await replay_event_log(engine)
    await check_acknowledged_kept(engine, ledger)
    check_no_double_holding(ledger)
    assert ledger.statuses[500] == 0


async def test_replica_killed_mid_load(engine: AsyncEngine, database_url: str) -> None:
    with running(database_url) as first, running(database_url) as second:
        urls = [first.url, second.url]
        async with httpx.AsyncClient(timeout=15) as http:
            await create_ranges(http, first.url)
            ledger = Ledger()
            replicas = Replicas(urls, http, ledger)
            events: list[dict] = []
            watch = AsyncWatch(first.url, since=0)

            async def follow(follower: AsyncWatch) -> None:
                async for event in follower:
                    events.append(dict(event))

            watcher = asyncio.create_task(follow(watch))
            load = [
                asyncio.create_task(client(n, replicas, 100_000, STATIC_POOL)) for n in range(16)
            ]
            await asyncio.sleep(2)
            before = ledger.acknowledged()
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()
            # The watcher carries on from the other replica where the first left off.
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await watch.aclose()
            moved = AsyncWatch(second.url, cursor=watch.cursor)
            watcher = asyncio.create_task(follow(moved))
            await asyncio.sleep(2)
            assert ledger.acknowledged() > before, "clients carry on against the survivor"
            for task in load:
                task.cancel()
            await asyncio.gather(*load, return_exceptions=True)
            await asyncio.sleep(0.5)  # requests the cancelled clients left in flight finish
            head = (await http.get(f"{second.url}/v1/events", params={"since": 0})).json()[
                "revision"
            ]
            for _ in range(100):
                if events and events[-1]["revision"] >= head:
                    break
                await asyncio.sleep(0.1)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await moved.aclose()
    await check_store(engine, ledger)
    assert ledger.transport_errors > 0, "the kill was felt by the clients"
    changes = [e["revision"] for e in events if e["type"] != "BOOKMARK"]
    assert changes == list(range(1, head + 1)), "no event lost or repeated across the move"
    print(
        f"\nreplica kill: {ledger.operations} operations, {ledger.acknowledged()} acknowledged "
        f"allocations, {ledger.transport_errors} dropped connections, "
        f"statuses {dict(ledger.statuses)}, {len(changes)} events watched"
    )


@pytest.mark.parametrize(
    "operations_per_client", [6, pytest.param(100, marks=pytest.mark.slow)], ids=["short", "long"]
)
async def test_stress_two_replicas_64_clients(
    engine: AsyncEngine, database_url: str, operations_per_client: int
) -> None:
    with running(database_url) as first, running(database_url) as second:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=128)) as http:
            await create_ranges(http, first.url)
            ledger = Ledger()
            replicas = Replicas([first.url, second.url], http, ledger)
            await asyncio.gather(
                *(client(n, replicas, operations_per_client, STATIC_POOL) for n in range(64))
            )
    await check_store(engine, ledger)
    assert ledger.operations == 64 * operations_per_client
    print(
        f"\nstress: {ledger.operations} operations by 64 clients on 2 replicas, "
        f"{ledger.acknowledged()} acknowledged allocations, statuses {dict(ledger.statuses)}"
    )
