"""The event feed at fleet scale: server CPU per delivery, delay, and reconnect storms.

Every figure comes from one ``allocator serve`` process and its watchers in a process of their
own (``bench.feed_watchers``), so the server's CPU time (psutil, user + system) counts only what
serving the feed costs, and the delays are those of a server whose watchers are elsewhere. This
process writes allocations through the service layer and takes the time of each commit.

- delivery: N live watchers (``since`` = the head), ``writes`` allocations ``interval`` apart;
  the server's CPU over them divided by the deliveries (writes x N), the commit-to-arrival delay
  p50/p99, and deliveries per server CPU-second, from which the replicas a cluster needs.
- resume storm: N watchers resume at once, half from a revision inside the server's memory
  window and half from one beyond it, while writes go on: the time until every stream is live,
  the statements the server sent to Postgres meanwhile (counted by a proxy on its connections,
  see ``bench.round_trips``), the server's resident memory.
- list storm: N watchers open ``initial=true`` at once with ``held`` allocations: the time until
  every list is complete and live, its statements and memory.

    python -m bench.feed_scale [--watchers 100 500 2000] [--writes 200]
        [--resume-storm 2000] [--list-storm 2000 --held 10000]

uses the Postgres of ``ALLOCATOR_BENCH_DATABASE_URL`` (a fresh database on it) or an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import psutil

from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, Allocator
from allocator.settings import Settings
from allocator.store.database import create_engine, create_pool
from bench import database, round_trips, server

CLUSTER_NODES = 5_000
CLUSTER_CHANGES_PER_SECOND = 20
"""A cluster at the Kubernetes scalability limits: a watcher per node, and its rate of changes."""
_OCTETS = itertools.count(100)
"""The second octet of each range of the run (a /16 each, none overlapping)."""


class Watchers:
    """The process of the watchers (``bench.feed_watchers``)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, url: str, queries: list[str], last: int) -> AsyncIterator[Watchers]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.feed_watchers", url,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 24,
        )  # fmt: skip
        watchers = cls(process)
        try:
            await watchers._send({"queries": queries, "last": last})
            yield watchers
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(orjson.dumps(message) + b"\n")
        await self._process.stdin.drain()

    async def _receive(self, seconds: float) -> dict[str, Any]:
        assert self._process.stdout is not None
        async with asyncio.timeout(seconds):
            line = await self._process.stdout.readline()
        if not line:
            raise RuntimeError("the watchers' process ended early")
        answer: dict[str, Any] = orjson.loads(line)
        return answer

    async def live(self, within: float = 300) -> float:
        """Wait until every stream is live; return the seconds it took since they opened."""
        seconds: float = (await self._receive(within))["seconds"]
        return seconds

    async def finish(self, committed: dict[int, float], wait: float = 300) -> dict[str, Any]:
        """Hand over the commit times; return the figures once every stream read the last (or
        ``wait`` seconds passed; 0: at once)."""
        await self._send({"committed": {str(k): v for k, v in committed.items()}, "wait": wait})
        return await self._receive(wait + 60)


class Memory:
    """The peak resident memory of a process, sampled every 50 ms while running."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.start = self._process.memory_info().rss
        self.peak = self.start

    @contextlib.asynccontextmanager
    async def sampling(self) -> AsyncIterator[Memory]:
        async def sample() -> None:
            while True:
                self.peak = max(self.peak, self._process.memory_info().rss)
                await asyncio.sleep(0.05)

        task = asyncio.create_task(sample())
        try:
            yield self
        finally:
            task.cancel()
            self.end = self._process.memory_info().rss

    def figures(self) -> dict[str, float]:
        mib = 2**20
        return {
            "rss_start_mib": round(self.start / mib, 1),
            "rss_peak_mib": round(self.peak / mib, 1),
            "rss_end_mib": round(self.end / mib, 1),
        }


@dataclass
class Bench:
    """The writing side: an allocator on the bench database and a range of its own."""

    allocator: Allocator
    tag: str

    @classmethod
    @contextlib.asynccontextmanager
    async def on(cls, database_url: str) -> AsyncIterator[Bench]:
        settings = Settings(database_url=database_url, pool_size=8)
        engine = create_engine(database_url, settings)
        pool = await create_pool(database_url, settings)
        try:
            tag = uuid.uuid4().hex[:8]
            await ranges.create_range(engine, f"feed-{tag}", f"10.{next(_OCTETS)}.0.0/16")
            yield cls(Allocator(pool), tag)
        finally:
            await pool.close()
            await engine.dispose()

    async def write(self, n: int) -> tuple[int, float]:
        """Allocate; return the revision and the time its commit returned."""
        held, _ = await self.allocator.allocate(AllocationRequest(owner=f"feed-{self.tag}-{n}"))
        return held.revision, time.monotonic()

    async def fill(self, count: int, concurrency: int = 32) -> int:
        """Allocate ``count`` addresses (grouped commits); return the last revision."""
        revisions: list[int] = []

        async def worker(first: int) -> None:
            for n in range(first, count, concurrency):
                revisions.append((await self.write(-1 - n))[0])

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return max(revisions)

    async def steady(self, writes: int, interval: float, first: int = 0) -> dict[int, float]:
        committed = {}
        for n in range(first, first + writes):
            revision, at = await self.write(n)
            committed[revision] = at
            await asyncio.sleep(interval)
        return committed


@contextlib.contextmanager
def serving(database_url: str, watchers: int, **env: str) -> Iterator[server.Server]:
    # One token (the anonymous one) holds every watcher: lift the per-token limit to fit.
    limit = str(max(256, watchers))
    with server.running(database_url, ALLOCATOR_MAX_WATCHERS_PER_TOKEN=limit, **env) as process:
        yield process


async def head(url: str) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        revision: int = (await http.get("/v1/events", params={"limit": 1})).json()["revision"]
        return revision


async def delivery(
    database_url: str, watchers: int, writes: int = 200, interval: float = 0.02
) -> dict[str, Any]:
    """Server CPU per delivered event and commit-to-watcher delay at ``watchers`` live watchers."""
    with serving(database_url, watchers) as srv:
        async with Bench.on(database_url) as bench:
            since = await head(srv.url)
            queries = [f"since={since}"] * watchers
            async with Watchers.running(srv.url, queries, since + writes) as reading:
                await reading.live()
                await asyncio.sleep(0.5)  # the connections settle (first bookmarks sent)
                cpu = srv.cpu_seconds()
                committed = await bench.steady(writes, interval)
                figures = await reading.finish(committed)
                spent = srv.cpu_seconds() - cpu
    deliveries = figures["deliveries"]
    per_delivery = spent / max(deliveries, 1)
    return {
        "watchers": watchers,
        "writes": writes,
        "interval_s": interval,
        "deliveries": deliveries,
        "expected": writes * watchers,
        "server_cpu_s": round(spent, 3),
        "cpu_us_per_delivery": round(per_delivery * 1e6, 2),
        "deliveries_per_cpu_second": round(1 / per_delivery) if per_delivery else None,
        "events_per_write": round(deliveries / max(figures["writes"], 1), 2),
        "p50_ms": figures["delay_ms"]["p50"],
        "p99_ms": figures["delay_ms"]["p99"],
        "max_ms": figures["delay_ms"]["p100"],
        "gaps": figures["gaps"],
        "errors": figures["error_count"],
    }


def replicas(deliveries_per_cpu_second: float) -> dict[str, Any]:
    """Server CPU and replicas (one core each) for a watcher per node at the cluster's rate."""
    needed = CLUSTER_NODES * CLUSTER_CHANGES_PER_SECOND
    cores = needed / deliveries_per_cpu_second
    return {
        "deliveries_per_second": needed,
        "server_cores": round(cores, 2),
        "replicas_at_half_a_core": max(1, int(-(-cores // 0.5))),
    }


async def resume_storm(
    database_url: str,
    watchers: int = 2000,
    window: int = 2000,
    within: int = 1000,
    beyond: int = 3000,
    interval: float = 0.05,
) -> dict[str, Any]:
    """``watchers`` resume at once, half ``within`` revisions back (in the window of ``window``
    events) and half ``beyond`` back, while writes go on every ``interval`` seconds."""
    proxy = round_trips.Proxy(database_url)
    try:
        proxied = proxy.start()
        with serving(proxied, watchers, ALLOCATOR_FEED_WINDOW=str(window)) as srv:
            async with Bench.on(database_url) as bench:
                top = await bench.fill(beyond + 100)
                await asyncio.sleep(0.5)  # the tailer has read them all
                queries = [f"since={top - within}", f"since={top - beyond}"] * (watchers // 2)
                figures = await _storm(proxy, srv, bench, queries, interval)
    finally:
        proxy.close()
    return {"watchers": watchers, "window": window, "since_back": [within, beyond], **figures}


async def list_storm(
    database_url: str, watchers: int = 2000, held: int = 10_000, interval: float = 0.05
) -> dict[str, Any]:
    """``watchers`` open ``initial=true`` at once with ``held`` allocations, while writes go on."""
    proxy = round_trips.Proxy(database_url)
    try:
        proxied = proxy.start()
        with serving(proxied, watchers) as srv:
            async with Bench.on(database_url) as bench:
                await bench.fill(held)
                queries = ["initial=true"] * watchers
                figures = await _storm(proxy, srv, bench, queries, interval, first=held)
    finally:
        proxy.close()
    return {"watchers": watchers, "held": held, **figures}


async def _storm(
    proxy: round_trips.Proxy,
    srv: server.Server,
    bench: Bench,
    queries: list[str],
    interval: float,
    first: int = 0,
) -> dict[str, Any]:
    """Open a watch per query at once while ``bench`` writes every ``interval`` seconds; return
    the time until all are live, the server's statements, CPU and memory meanwhile."""
    async with Watchers.running(srv.url, queries, 2**62) as reading:
        trips = _trips(proxy)
        memory = Memory(srv.process.pid)
        cpu = srv.cpu_seconds()
        async with memory.sampling():
            writing = asyncio.create_task(bench.steady(10**6, interval, first))
            live = await reading.live(within=900)
            statements = _trips(proxy)
            spent = srv.cpu_seconds() - cpu
            writing.cancel()
        figures = await reading.finish({}, wait=0)
    return {
        "all_live_s": round(live, 3),
        "listed": figures["listed"],
        "round_trips": statements[0] - trips[0],
        "statements": statements[1] - trips[1],
        "server_cpu_s": round(spent, 3),
        "sent_mib": round(figures["bytes"] / 2**20, 1),
        "gaps": figures["gaps"],
        "errors": figures["error_count"],
        **memory.figures(),
    }


def _trips(proxy: round_trips.Proxy) -> tuple[int, int]:
    """Round trips and statements of every connection through ``proxy`` so far."""
    trips = [trip for link in proxy.links for trip in link.trips]
    return len(trips), sum(trip.statements for trip in trips)


async def _main(arguments: argparse.Namespace) -> None:
    async with database.fresh_database(os.environ.get(database.ENV)) as url:
        for count in arguments.watchers:
            figures = await delivery(url, count, arguments.writes, arguments.interval)
            figures["cluster"] = replicas(figures["deliveries_per_cpu_second"])
            print(orjson.dumps(figures).decode(), flush=True)
        if arguments.resume_storm:
            figures = await resume_storm(url, arguments.resume_storm)
            print(orjson.dumps(figures).decode(), flush=True)
        if arguments.list_storm:
            figures = await list_storm(url, arguments.list_storm, arguments.held)
            print(orjson.dumps(figures).decode(), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, nargs="*", default=[100, 500, 2000])
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--resume-storm", type=int, metavar="WATCHERS", help="resuming at once")
    parser.add_argument("--list-storm", type=int, metavar="WATCHERS", help="listing at once")
    parser.add_argument("--held", type=int, default=10_000)
    arguments = parser.parse_args()
    asyncio.run(_main(arguments))
