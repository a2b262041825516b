"""The measured scenarios: each returns plain figures (dicts of numbers) for the report."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.service import ranges
from allocator.service.allocator import AllocationRequest
from bench import database
from bench.http_client import Connection
from bench.load import Operation, Run, closed_loop, open_loop

ServiceAllocate = Callable[[AllocationRequest], Awaitable[Any]]


class HttpClients:
    """One keep-alive connection per client, opened on first use."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._connections: dict[int, Connection] = {}

    async def get(self, client: int) -> Connection:
        if client not in self._connections:
            self._connections[client] = await Connection.open(self.base_url)
        return self._connections[client]

    async def close(self) -> None:
        for connection in self._connections.values():
            await connection.close()
        self._connections.clear()


def http_allocation(
    clients: HttpClients, range_name: str | None, tag: str, *, release: bool = False
) -> Operation:
    """An allocation through the HTTP API from ``range_name`` (None: naming no range), then, with
    ``release``, its unmeasured release."""
    named = {"range": range_name} if range_name else {}

    async def operation(client: int, n: int) -> float:
        connection = await clients.get(client)
        body = orjson.dumps({"owner": f"{tag}-{client}-{n}", **named})
        began = time.perf_counter()
        status, content = await connection.request("POST", "/v1/allocations", body)
        took = time.perf_counter() - began
        if status != 201:
            raise RuntimeError(f"allocation answered {status}: {content[:200]!r}")
        if release:
            ip = orjson.loads(content)["ip"]
            status, content = await connection.request("DELETE", f"/v1/allocations/{ip}")
            if status != 204:
                raise RuntimeError(f"release answered {status}: {content[:200]!r}")
        return took

    return operation


def http_churn(clients: HttpClients, range_name: str, tag: str) -> Operation:
    """Allocations and owner-guarded releases alternating on each client: every other request
    releases the address the one before it got."""
    held: dict[int, tuple[str, str]] = {}

    async def operation(client: int, n: int) -> float:
        connection = await clients.get(client)
        if client in held:
            ip, owner = held.pop(client)
            began = time.perf_counter()
            status, content = await connection.request(
                "DELETE", f"/v1/allocations/{ip}?owner={owner}"
            )
            took = time.perf_counter() - began
            if status != 204:
                raise RuntimeError(f"release answered {status}: {content[:200]!r}")
            return took
        owner = f"{tag}-{client}-{n}"
        body = orjson.dumps({"owner": owner, "range": range_name})
        began = time.perf_counter()
        status, content = await connection.request("POST", "/v1/allocations", body)
        took = time.perf_counter() - began
        if status != 201:
            raise RuntimeError(f"allocation answered {status}: {content[:200]!r}")
        held[client] = (orjson.loads(content)["ip"], owner)
        return took

    return operation


def service_allocation(allocate: ServiceAllocate, range_name: str, tag: str) -> Operation:
    """An allocation through the service layer, in this process (no HTTP)."""

    async def operation(client: int, n: int) -> float:
        began = time.perf_counter()
        await allocate(AllocationRequest(owner=f"{tag}-{client}-{n}", range=range_name))
        return time.perf_counter() - began

    return operation


async def throughput(
    operation_for: Callable[[str], Operation],
    reset: Callable[[], Awaitable[None]],
    client_counts: list[int],
    seconds: float,
    warmup: float,
    server_cpu: Callable[[], float] | None = None,
    on_each: Callable[[], Awaitable[None]] | None = None,
) -> list[dict[str, Any]]:
    """Closed-loop allocations per second at each client count; the range is emptied after each
    count (every allocation released), so it never fills."""
    figures = []
    for clients in client_counts:
        before = server_cpu() if server_cpu else None
        run = await closed_loop(operation_for(f"t{clients}"), clients, seconds, warmup)
        if server_cpu and before is not None:
            # The server also worked through the warmup: scale to the window.
            run.server_cpu_seconds = (server_cpu() - before) * run.seconds / (run.seconds + warmup)
        figures.append(run.figures())
        await reset()
        if on_each is not None:
            await on_each()
    return figures


async def churn(
    clients: HttpClients,
    range_name: str,
    connections: int,
    seconds: float,
    warmup: float,
    server_cpu: Callable[[], float],
) -> dict[str, Any]:
    """Requests per second of allocations and releases alternating on ``connections`` clients
    (``http_churn``); what is still held at the end stays for the caller to reset."""
    before = server_cpu()
    run = await closed_loop(http_churn(clients, range_name, "churn"), connections, seconds, warmup)
    run.server_cpu_seconds = (server_cpu() - before) * run.seconds / (run.seconds + warmup)
    return run.figures()


async def offered_latency(
    operation: Operation, rate: float, seconds: float, concurrency: int
) -> dict[str, Any]:
    """Latency of allocations offered at a fixed ``rate`` (open loop)."""
    run = await open_loop(operation, rate, seconds, concurrency)
    return run.figures()


async def single_client_latency(operation: Operation, samples: int) -> dict[str, Any]:
    """One client, ``samples`` operations back to back: the figures of one allocation."""
    latency = []
    for n in range(samples):
        latency.append(await operation(0, n) * 1000)
    run = Run(1, len(latency), sum(latency) / 1000, 0.0, latency)
    figures = run.figures()
    return {k: figures[k] for k in ("count", "p50_ms", "p99_ms", "p999_ms")}


FILLS = (0.0, 0.5, 0.9, 0.99, 0.999)


async def flat_cost(
    engine: AsyncEngine,
    admin: asyncpg.Connection,
    clients: HttpClients,
    samples: int,
    rng: random.Random,
) -> dict[str, Any]:
    """Single-client allocation latency (each allocation released right after, unmeasured, so the
    fill stays put) on an empty /24, a /16 at each fill level, an empty /12 and an empty /64."""
    shapes = {
        "empty /24": ("flat-24", "10.32.0.0/24"),
        "/16": ("flat-16", "10.33.0.0/16"),
        "empty /12": ("flat-12", "10.48.0.0/12"),
        "empty IPv6 /64": ("flat-64", "fd00:1::/64"),
    }
    for name, cidr in shapes.values():
        await ranges.create_range(engine, name, cidr)
    figures: dict[str, Any] = {}
    warm = http_allocation(clients, "flat-24", "warm", release=True)
    for n in range(min(samples, 50)):
        await warm(0, n)
    figures["empty /24"] = await single_client_latency(
        http_allocation(clients, "flat-24", "f24", release=True), samples
    )
    for fill in FILLS:
        await database.release_all(admin, "flat-16")
        held = await database.fill(admin, "flat-16", fill, rng)
        await database.vacuum(admin)
        figure = await single_client_latency(
            http_allocation(clients, "flat-16", f"f16-{fill}", release=True), samples
        )
        figures[f"/16 at {fill:.1%} fill"] = {**figure, "held": held}
    await database.release_all(admin, "flat-16")
    figures["empty /12"] = await single_client_latency(
        http_allocation(clients, "flat-12", "f12", release=True), samples
    )
    figures["empty IPv6 /64"] = await single_client_latency(
        http_allocation(clients, "flat-64", "f64", release=True), samples
    )
    return figures


async def fill_time(
    clients: HttpClients, engine: AsyncEngine, cidr: str, workers: int
) -> dict[str, Any]:
    """Time to allocate every address of ``cidr`` through the HTTP API with ``workers`` clients."""
    created = await ranges.create_range(engine, "fill", cidr)
    size = created.geometry.size
    done = 0
    full = 0

    async def client(c: int) -> None:
        nonlocal done, full
        connection = await clients.get(c)
        n = 0
        while True:
            body = orjson.dumps({"owner": f"fill-{c}-{n}", "range": "fill"})
            status, content = await connection.request("POST", "/v1/allocations", body)
            n += 1
            if status == 201:
                done += 1
            elif status == 409 and b"range-full" in content:
                full += 1
                return
            else:
                raise RuntimeError(f"allocation answered {status}: {content[:200]!r}")

    began = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(workers)))
    seconds = time.perf_counter() - began
    if done != size:
        raise RuntimeError(f"filled {done} of {size} addresses")
    return {
        "cidr": cidr,
        "addresses": size,
        "clients": workers,
        "seconds": round(seconds, 3),
        "per_second": round(size / seconds, 1),
    }


async def database_size(
    engine: AsyncEngine,
    admin: asyncpg.Connection,
    allocate: ServiceAllocate,
    count: int,
    workers: int,
) -> dict[str, Any]:
    """Table sizes after ``count`` allocations in an IPv6 /64 made through the service layer."""
    await ranges.create_range(engine, "size-64", "fd00:2::/64")
    before = await database.tables_size(admin)
    issued = 0

    async def client(c: int) -> None:
        nonlocal issued
        while issued < count:
            issued += 1
            await allocate(AllocationRequest(owner=f"size-{c}-{issued}", range="size-64"))

    began = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(workers)))
    seconds = time.perf_counter() - began
    await admin.execute("VACUUM ANALYZE")
    after = await database.tables_size(admin)
    blocks = await admin.fetchval(
        "SELECT count(*) FROM bitmap_block b JOIN ip_range r ON r.id = b.range_id"
        " WHERE r.name = 'size-64'"
    )
    total = sum(after.values())
    return {
        "allocations": count,
        "clients": workers,
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds, 1),
        "blocks": int(blocks),
        "bytes": total,
        "bytes_per_allocation": round(total / count, 1),
        "bytes_by_table": after,
        "bytes_before": sum(before.values()),
    }
