"""A failover of Postgres under load: two server processes on the multi-host URL of a primary and
a hot standby, writers and watchers, the primary stopped as by a crash and the standby promoted.

Synchronous replication: nothing acknowledged is lost, no watcher lists again. Asynchronous, with
the standby behind: the newest commits are lost (the test says how many), but no watcher is left
with a history the database no longer has: each ends equal to the list.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from allocator.client.watch import AsyncWatch
from allocator.settings import Settings
from allocator.store.database import create_engine
from bench.server import running
from tests.e2e.load import (
    Ledger,
    Replicas,
    check_no_double_holding,
    client,
    lost_writes,
    replay_event_log,
)
from tests.e2e.replication import Pair, primary_and_standby
from tests.integration.consistency import assert_consistent

CLIENTS = 8
WAIT = 60.0
"""Generous: only a broken failover takes this long, a slow machine does not."""


class Watcher:
    """A list+watch on one server, counting how often it had to list."""

    def __init__(self, url: str) -> None:
        self.watch = AsyncWatch(url)
        self.lists = 0
        self.task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async for event in self.watch:
            if event["type"] == "BOOKMARK" and event.get("initial_end"):
                self.lists += 1

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.watch.aclose()


async def first_write(http: httpx.AsyncClient, urls: list[str]) -> float:
    """Return when an allocation succeeded again (monotonic time), asking each server in turn."""
    deadline = time.monotonic() + WAIT
    for attempt in range(100_000):
        url = urls[attempt % len(urls)]
        try:
            response = await http.post(f"{url}/v1/allocations", json={"owner": f"probe-{attempt}"})
            if response.status_code == 201:
                return time.monotonic()
            assert response.status_code == 503, response.text
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"no write succeeded {WAIT} s after the failover"
        await asyncio.sleep(0.02)
    raise AssertionError("unreachable")


async def listening_on(http: httpx.AsyncClient, url: str, port: int) -> None:
    """Wait until the server's LISTEN connection is live on the server at ``port``."""
    deadline = time.monotonic() + WAIT
    while True:
        listener = (await http.get(f"{url}/readyz")).json()["listener"]
        if listener["live"] and str(listener["server"]).endswith(f":{port}"):
            metrics = (await http.get(f"{url}/metrics")).text
            assert "allocator_feed_listener_up 1.0" in metrics
            return
        assert time.monotonic() < deadline, f"{url} does not listen on :{port}: {listener}"
        await asyncio.sleep(0.1)


async def listed(http: httpx.AsyncClient, url: str) -> tuple[dict[str, str], int]:
    """Return every allocation (ip -> owner) of the list, and the revision of its first page."""
    items: dict[str, str] = {}
    params: dict[str, Any] = {"limit": 5000}
    revision = None
    while True:
        page = (await http.get(f"{url}/v1/allocations", params=params)).json()
        revision = page["revision"] if revision is None else revision
        items.update({a["ip"]: a["owner"] for a in page["items"]})
        if not page["next_cursor"]:
            return items, revision
        params["cursor"] = page["next_cursor"]


async def fail_over(pair: Pair, *, synchronous: bool, seconds: float = 1.5) -> dict[str, Any]:
    """Run the load ``seconds`` before the failover and after it; return what was measured."""
    env = {"ALLOCATOR_POOL_TIMEOUT": "2", "ALLOCATOR_CONNECT_TIMEOUT": "2"}
    with running(pair.url, **env) as one, running(pair.url, **env) as two:
        urls = [one.url, two.url]
        async with httpx.AsyncClient(timeout=15) as http:
            created = await http.post(
                f"{urls[0]}/v1/ranges", json={"name": "r", "cidr": "10.0.0.0/22"}
            )
            assert created.status_code == 201, created.text
            ledger = Ledger()
            replicas = Replicas(urls, http, ledger)
            pool = [f"10.0.0.{n}" for n in range(1, 17)]  # in the static band
            watchers = [Watcher(url) for url in urls]
            load = [asyncio.create_task(client(n, replicas, 100_000, pool)) for n in range(CLIENTS)]
            await asyncio.sleep(seconds)
            acknowledged_before = ledger.acknowledged()
            if not synchronous:
                await pair.detach_standby()
                await asyncio.sleep(1.0)  # commits the standby will never have
            killed_at = time.monotonic()
            await asyncio.to_thread(pair.primary.crash)
            await asyncio.to_thread(pair.standby.promote)
            promoted_at = time.monotonic()
            written_at = await first_write(http, urls)
            for url in urls:
                await listening_on(http, url, pair.standby.port)
            await asyncio.sleep(seconds)
            assert ledger.acknowledged() > acknowledged_before, "allocations go on after it"
            for task in load:
                task.cancel()
            outcomes = await asyncio.gather(*load, return_exceptions=True)
            failures = [o for o in outcomes if not isinstance(o, asyncio.CancelledError | None)]
            assert not failures, failures[0]
            for watcher in watchers:
                # Requests in flight when the clients stopped may still commit: compare the
                # watcher with a list at the very revision it reached.
                deadline = time.monotonic() + WAIT
                while True:
                    state, revision = await listed(http, urls[0])
                    while watcher.watch.state.revision < revision:
                        assert time.monotonic() < deadline, "the watcher does not catch up"
                        await asyncio.sleep(0.05)
                    if watcher.watch.state.revision == revision:
                        break
                seen = {ip: a["owner"] for ip, a in watcher.watch.state.allocations.items()}
                assert seen == state, "every watcher holds what the list says"
                await watcher.stop()
    engine = create_engine(pair.url, Settings(database_url=pair.url))
    try:
        await assert_consistent(engine)  # no bit without its row, dense revisions
        await replay_event_log(engine)
        lost = await lost_writes(engine, ledger)
    finally:
        await engine.dispose()
    assert ledger.statuses[500] == 0
    return {
        "ledger": ledger,
        "lost": lost,
        "lists": [w.lists - 1 for w in watchers],
        "recovery": written_at - killed_at,
        "after_promotion": written_at - promoted_at,
    }


def report(kind: str, figures: dict[str, Any]) -> None:
    ledger: Ledger = figures["ledger"]
    print(
        f"\nfailover ({kind}): first write {figures['recovery']:.2f} s after the kill "
        f"({figures['after_promotion']:.2f} s after the promotion), {ledger.operations} operations, "
        f"{ledger.acknowledged()} acknowledged allocations, {len(figures['lost'])} acknowledged "
        f"writes lost, watchers listed again {figures['lists']} times, "
        f"statuses {dict(ledger.statuses)}"
    )


async def test_synchronous_failover_loses_nothing() -> None:
    async with primary_and_standby(synchronous=True) as pair:
        figures = await fail_over(pair, synchronous=True)
    report("synchronous", figures)
    assert figures["lost"] == [], "nothing acknowledged is lost"
    check_no_double_holding(figures["ledger"])
    assert figures["lists"] == [0, 0], "no watcher had to list again"


async def test_asynchronous_failover_loses_the_newest_commits_but_forks_no_watcher() -> None:
    async with primary_and_standby(synchronous=False) as pair:
        figures = await fail_over(pair, synchronous=False)
    report("asynchronous, the standby 1 s behind", figures)
    assert figures["lost"], "the standby was behind: the newest acknowledged writes are gone"
    assert all(n >= 1 for n in figures["lists"]), "watchers that saw lost revisions listed again"


@pytest.mark.slow
@pytest.mark.parametrize("synchronous", [True, False], ids=["synchronous", "asynchronous"])
async def test_failover_after_a_longer_load(synchronous: bool) -> None:
    async with primary_and_standby(synchronous=synchronous) as pair:
        figures = await fail_over(pair, synchronous=synchronous, seconds=15)
    report(f"{'' if synchronous else 'a'}synchronous, 15 s of load", figures)
    assert bool(figures["lost"]) is not synchronous
    assert (figures["lists"] == [0, 0]) is synchronous
