"""Postgres restarts under load: requests fail fast with 503 and Retry-After while it is down,
the service recovers by itself, watchers resume without a gap, and nothing acknowledged is lost.

The Postgres restarted is one this test starts for itself (never a shared one).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from allocator.client.watch import AsyncWatch
from allocator.settings import Settings
from allocator.store.database import create_engine
from bench.server import running
from tests.e2e.load import (
    Ledger,
    Replicas,
    check_acknowledged_kept,
    check_no_double_holding,
    client,
    replay_event_log,
)
from tests.e2e.restartable import restartable_postgres
from tests.integration.consistency import assert_consistent

CLIENTS = 8
OUTAGE_SECONDS = 3.0
RECOVERY_LIMIT = 30.0


async def wait_ready(http: httpx.AsyncClient, url: str) -> float:
    """Return how long /readyz took to answer 200 again."""
    started = time.monotonic()
    while time.monotonic() - started < RECOVERY_LIMIT:
        try:
            if (await http.get(f"{url}/readyz")).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"not ready {RECOVERY_LIMIT} s after the database came back")


@pytest.mark.parametrize("restarts", [1, pytest.param(3, marks=pytest.mark.slow)])
async def test_database_restart_under_load(restarts: int) -> None:
    with restartable_postgres() as postgres:
        env = {"ALLOCATOR_POOL_TIMEOUT": "2", "ALLOCATOR_CONNECT_TIMEOUT": "2"}
        with running(postgres.url, **env) as server:
            url = server.url
            async with httpx.AsyncClient(timeout=15) as http:
                created = await http.post(
                    f"{url}/v1/ranges", json={"name": "r", "cidr": "10.0.0.0/24"}
                )
                assert created.status_code == 201, created.text
                ledger = Ledger()
                replicas = Replicas([url], http, ledger)
                pool = [f"10.0.0.{n}" for n in range(1, 17)]  # the static band
                events: list[dict] = []

                async def watch() -> None:
                    follower = AsyncWatch(url, since=0)
                    try:
                        async for event in follower:
                            events.append(dict(event))
                    finally:
                        await follower.aclose()

                watcher = asyncio.create_task(watch())
                load = [
                    asyncio.create_task(client(n, replicas, 100_000, pool)) for n in range(CLIENTS)
                ]
                recoveries = []
                for _ in range(restarts):
                    await asyncio.sleep(1.5)
                    before = ledger.acknowledged()
                    await asyncio.to_thread(postgres.stop)
                    outage_started = time.monotonic()
                    await asyncio.sleep(OUTAGE_SECONDS)
                    during = await http.post(f"{url}/v1/allocations", json={"owner": "probe"})
                    probe_seconds = time.monotonic() - outage_started - OUTAGE_SECONDS
                    assert during.status_code == 503, during.text
                    assert during.json()["type"] == "database-unavailable"
                    assert int(during.headers["retry-after"]) >= 1
                    assert probe_seconds < 10, "a request fails fast while the database is away"
                    assert (await http.get(f"{url}/readyz")).status_code == 503
                    await asyncio.to_thread(postgres.start)
                    recoveries.append(await wait_ready(http, url))
                    await asyncio.sleep(1.5)
                    assert ledger.acknowledged() > before, "allocations go on after recovery"
                for task in load:
                    task.cancel()
                await asyncio.gather(*load, return_exceptions=True)
                head = (await http.get(f"{url}/v1/events", params={"since": 0, "limit": 1})).json()[
                    "revision"
                ]
                for _ in range(100):  # the watcher catches up with the head
                    if events and events[-1]["revision"] >= head:
                        break
                    await asyncio.sleep(0.1)
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
        engine = create_engine(postgres.url, Settings(database_url=postgres.url))
        try:
            await assert_consistent(engine)
            await replay_event_log(engine)
            await check_acknowledged_kept(engine, ledger)
        finally:
            await engine.dispose()
    check_no_double_holding(ledger)
    assert ledger.statuses[500] == 0
    assert ledger.statuses[503] > 0, "the outage was seen by the clients"
    assert ledger.retry_after_missing == 0, "every 503 carries Retry-After"
    changes = [e["revision"] for e in events if e["type"] != "BOOKMARK"]
    # Requests in flight when the clients stopped may commit after ``head`` was read.
    assert changes == list(range(1, len(changes) + 1)), "every revision once, in order, no gap"
    assert len(changes) >= head
    print(
        f"\nrestart: {restarts} restarts, {ledger.operations} operations, "
        f"{ledger.acknowledged()} acknowledged allocations, statuses {dict(ledger.statuses)}, "
        f"ready again after {[round(s, 2) for s in recoveries]} s, {len(changes)} events watched"
    )
