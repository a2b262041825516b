"""Load drivers: a closed loop of N clients, and an open loop at a fixed offered rate.

An operation is an ``async (client, n) -> float`` that does one measured thing and returns how long
its measured part took in seconds (an allocation followed by an unmeasured release returns the
allocation's time only). Latencies of the open loop count from the moment each request was due,
not from when it was sent, so a stalled server cannot hide its queue (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import math
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Operation = Callable[[int, int], Awaitable[float]]


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile (``fraction`` in 0..1) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


@dataclass
class Run:
    clients: int
    count: int
    seconds: float
    load_cpu_seconds: float
    latency_ms: list[float] = field(default_factory=list, repr=False)
    errors: int = 0
    server_cpu_seconds: float | None = None
    offered_rate: float | None = None

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def figures(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "clients": self.clients,
            "count": self.count,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.rate, 1),
            "errors": self.errors,
            "p50_ms": percentile(self.latency_ms, 0.50),
            "p99_ms": percentile(self.latency_ms, 0.99),
            "p999_ms": percentile(self.latency_ms, 0.999),
            "load_cpu_seconds": round(self.load_cpu_seconds, 3),
            "load_cpu_cores": round(self.load_cpu_seconds / self.seconds, 3) if self.seconds else 0,
        }
        if self.server_cpu_seconds is not None:
            figures["server_cpu_seconds"] = round(self.server_cpu_seconds, 3)
            figures["server_cpu_cores"] = round(self.server_cpu_seconds / self.seconds, 3)
        if self.offered_rate is not None:
            figures["offered_per_second"] = round(self.offered_rate, 1)
        return figures


async def closed_loop(
    operation: Operation, clients: int, seconds: float, warmup: float = 0.5
) -> Run:
    """Run ``clients`` loops of ``operation`` back to back; count what completes in the window
    that follows ``warmup``. When nothing that began in the window has completed by its end (a
    short window on a busy machine), the window lasts until the first such request completes, so
    a run always measures something."""
    latency: list[float] = []
    errors = 0
    started = time.perf_counter()
    window_start = started + warmup
    window_end = window_start + seconds
    cpu_at_start: float | None = None

    async def client(c: int) -> None:
        nonlocal errors, cpu_at_start, window_end
        n = 0
        while (begin := time.perf_counter()) < window_end:
            try:
                took = await operation(c, n)
            except Exception:
                errors += 1
                if errors > 100:
                    raise
                continue
            finally:
                n += 1
            if begin >= window_start:
                finished = time.perf_counter()
                if not latency and finished > window_end:
                    window_end = finished
                if finished <= window_end:
                    latency.append(took * 1000)

    async def cpu_mark() -> None:
        nonlocal cpu_at_start
        await asyncio.sleep(warmup)
        cpu_at_start = cpu_seconds()

    marker = asyncio.create_task(cpu_mark())
    await asyncio.gather(*(client(c) for c in range(clients)))
    await marker
    used = cpu_seconds() - (cpu_at_start or 0.0)
    return Run(clients, len(latency), window_end - window_start, used, latency, errors)


async def open_loop(
    operation: Operation, rate: float, seconds: float, concurrency: int = 64
) -> Run:
    """Start ``operation`` at ``rate`` per second for ``seconds``, on at most ``concurrency``
    clients at once (a request due while all are busy waits, and its wait counts)."""
    free: asyncio.Queue[int] = asyncio.Queue()
    for c in range(concurrency):
        free.put_nowait(c)
    latency: list[float] = []
    errors = 0
    total = max(1, int(rate * seconds))
    tasks: list[asyncio.Task[None]] = []

    async def one(n: int, due: float) -> None:
        nonlocal errors
        c = await free.get()
        try:
            await operation(c, n)
            latency.append((time.perf_counter() - due) * 1000)
        except Exception:
            errors += 1
        finally:
            free.put_nowait(c)

    cpu_before = cpu_seconds()
    start = time.perf_counter()
    for n in range(total):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    run = Run(concurrency, len(latency), elapsed, cpu_seconds() - cpu_before, latency, errors)
    run.offered_rate = rate
    return run
