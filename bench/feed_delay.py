"""Commit-to-watcher delay of the event feed, at several numbers of concurrent watchers.

How it is measured: one ``allocator serve`` process serves the watchers (NDJSON streams opened
with ``since`` = the head, so every one is live before the first write). This process writes
allocations one at a time through the service layer, in process, and takes the time when the
commit returns (the commit acknowledgement, a fraction of a millisecond after the commit itself);
each watcher takes the time when the event's line arrives. The delay of one event at one watcher
is the difference (one monotonic clock, one process). Writes are spaced ``interval`` apart, so
what is measured is the delivery path (notification, tailer read, fan-out, HTTP), not a queue of
writes. The watchers' reading runs in this process too (on bare sockets, to keep its cost low),
so at 200 watchers the figure includes the time this process takes to read 200 streams on the
same cores as the server: an upper bound for what one agent sees.

    python -m bench.feed_delay [--watchers 1 200] [--writes 200]

uses the Postgres of ``ALLOCATOR_BENCH_DATABASE_URL`` (a fresh database on it) or an embedded one.
Other benchmarks call ``measure`` or ``delivery_figures``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, Allocator
from allocator.settings import Settings
from allocator.store.database import create_engine, create_pool
from bench import database, server


@dataclass(frozen=True)
class Delay:
    watchers: int
    samples: int
    median_ms: float
    p99_ms: float
    max_ms: float

    def line(self) -> str:
        return (
            f"{self.watchers:>5} watchers: median {self.median_ms:6.2f} ms, "
            f"p99 {self.p99_ms:6.2f} ms, max {self.max_ms:6.2f} ms ({self.samples} deliveries)"
        )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _watcher(
    url: str, since: int, last: int, live: asyncio.Event, arrivals: dict[int, float]
) -> None:
    """Read one watch stream with a bare socket (an HTTP client library would cost this process
    more per line than the server spends per event): every chunk the server writes holds whole
    NDJSON lines, so the lines that start with ``{`` are the events, whatever the chunk framing."""
    address = urlsplit(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    request = f"GET /v1/watch?since={since} HTTP/1.1\r\nHost: bench\r\n\r\n"
    writer.write(request.encode())
    tail = b""
    try:
        while data := await reader.read(1 << 16):
            now = time.monotonic()
            *lines, tail = (tail + data).split(b"\n")
            for line in lines:
                if not line.startswith(b"{"):
                    continue  # headers and chunk framing
                event = orjson.loads(line)
                if event["type"] == "BOOKMARK":
                    live.set()
                    continue
                arrivals[event["revision"]] = now
                if event["revision"] >= last:
                    return
    finally:
        writer.close()


async def measure(
    database_url: str, watchers: int, writes: int = 200, interval: float = 0.02
) -> Delay:
    """Return the delay from commit to arrival at ``watchers`` concurrent watchers.

    ``database_url`` must name a database the server may migrate (a fresh one is best).
    """
    settings = Settings(database_url=database_url, pool_size=4)
    engine = create_engine(database_url, settings)
    pool = await create_pool(database_url, settings)
    allocator = Allocator(pool)
    try:
        # One token (the anonymous one) holds every watcher: lift the per-token limit to fit.
        limit = str(max(256, watchers))
        with server.running(database_url, ALLOCATOR_MAX_WATCHERS_PER_TOKEN=limit) as process:
            async with httpx.AsyncClient(base_url=process.url, timeout=30) as http:
                tag = uuid.uuid4().hex[:8]
                octet = int(tag[:2], 16)
                await ranges.create_range(engine, f"feed-{tag}", f"10.{octet}.0.0/16")
                head = (await http.get("/v1/events", params={"limit": 1})).json()["revision"]
                last = head + writes
                arrivals: list[dict[int, float]] = [{} for _ in range(watchers)]
                ready = [asyncio.Event() for _ in range(watchers)]
                readers = [
                    asyncio.create_task(_watcher(process.url, head, last, ready[n], arrivals[n]))
                    for n in range(watchers)
                ]
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 60)
                committed: dict[int, float] = {}
                for n in range(writes):
                    held, _ = await allocator.allocate(AllocationRequest(owner=f"feed-{tag}-{n}"))
                    committed[held.revision] = time.monotonic()
                    await asyncio.sleep(interval)
                await asyncio.wait_for(asyncio.gather(*readers), 120)
    finally:
        await pool.close()
        await engine.dispose()
    delays = [
        (seen[revision] - at) * 1000
        for seen in arrivals
        for revision, at in committed.items()
        if revision in seen
    ]
    return Delay(
        watchers=watchers,
        samples=len(delays),
        median_ms=statistics.median(delays),
        p99_ms=percentile(delays, 0.99),
        max_ms=max(delays),
    )


async def delivery_figures(
    database_url: str, watcher_counts: tuple[int, ...] = (1, 200), writes: int = 200
) -> dict[str, Any]:
    """Return ``{"median_ms_N": ..., "p99_ms_N": ..., "summary": "..."}`` for each count N."""
    figures: dict[str, Any] = {}
    lines = []
    for count in watcher_counts:
        delay = await measure(database_url, count, writes)
        figures[f"median_ms_{count}"] = round(delay.median_ms, 2)
        figures[f"p99_ms_{count}"] = round(delay.p99_ms, 2)
        lines.append(delay.line())
    figures["summary"] = "; ".join(lines)
    return figures


async def _main(watcher_counts: list[int], writes: int) -> None:
    async with database.fresh_database(os.environ.get(database.ENV)) as url:
        for count in watcher_counts:
            print((await measure(url, count, writes)).line(), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, nargs="+", default=[1, 200])
    parser.add_argument("--writes", type=int, default=200)
    arguments = parser.parse_args()
    asyncio.run(_main(arguments.watchers, arguments.writes))
