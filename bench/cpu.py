"""CPU per request, next to what the framework and the database need at least.

The server process's CPU time (psutil: user + system) over a fixed count of sequential requests of
one kind, next to a bare FastAPI app's per request (``bench.bare_app``); and the CPU time of the
Postgres backends of the server's connections over the same requests, next to a backend's per
one-row UPDATE transaction. Rounds of the measured kinds and of the references alternate, so a
change in the machine's load touches both sides; each figure is the median over the rounds.

Backends are read from ``/proc``: only when Postgres runs on this machine. A backend is one
process of one thread, so its ``/proc/<pid>/schedstat`` (nanoseconds on a CPU) is exact where the
kernel has it; else ``/proc/<pid>/stat`` (user + system, in clock ticks).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import orjson
import psutil
from sqlalchemy.engine import make_url

from bench import reference
from bench.http_client import Connection
from bench.server import Server

APPLICATION_NAME = "clusterip-allocator"
"""The server's connections carry it (its listener's too, as a prefix)."""

SETTLE = 0.05
"""Seconds of quiet before and after a measured run, so the work a run causes (the feed's read
after each commit) falls inside it and nothing of the one before does."""

BARE = "bare FastAPI POST (same body)"
UPDATE = "one-row UPDATE transaction"
KINDS = (
    "dynamic allocation",
    "release",
    "static allocation",
    "GET /v1/ranges/{name}",
    "GET /healthz",
)


def backend_seconds(pid: int) -> float | None:
    """CPU time of process ``pid`` so far (None when it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_method() -> str:
    own = Path(f"/proc/{os.getpid()}/schedstat")
    return "/proc/<pid>/schedstat" if own.exists() else "/proc/<pid>/stat"


async def local_postgres(admin: asyncpg.Connection, dsn: str) -> str | None:
    """Return None when the backends of ``dsn``'s server are processes of this machine, else why
    not."""
    url = make_url(dsn)
    host = url.host or str(url.query.get("host", ""))
    if host and host not in ("localhost", "127.0.0.1", "::1") and not host.startswith("/"):
        return f"Postgres runs on {host}, not on this machine"
    pid = await admin.fetchval("SELECT pg_backend_pid()")
    try:
        if "postgres" not in psutil.Process(pid).name():
            return "the backend pids of Postgres are not processes of this machine"
    except psutil.Error:
        return "the backend pids of Postgres are not processes of this machine"
    if backend_seconds(pid) is None:
        return "the backends' /proc entries cannot be read"
    return None


class Backends:
    """The backends of a server's connections to the bench database; the bench process's own
    connections (same application name) are told apart by their client ports."""

    def __init__(self, admin: asyncpg.Connection) -> None:
        self._admin = admin

    async def pids(self) -> list[int]:
        own = [c.laddr.port for c in psutil.Process().net_connections("tcp") if c.laddr]
        rows = await self._admin.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database()"
            "   AND application_name LIKE $1 || '%'"
            "   AND coalesce(client_port, -1) <> ALL($2::int[])",
            APPLICATION_NAME,
            own,
        )
        return [r["pid"] for r in rows]

    async def seconds(self) -> dict[int, float]:
        found = {}
        for pid in await self.pids():
            if (used := backend_seconds(pid)) is not None:
                found[pid] = used
        return found


def used_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU the backends spent between two readings; one that appeared in between counts whole."""
    return sum(used - before.get(pid, 0.0) for pid, used in after.items())


Request = Callable[[Connection, int], Awaitable[None]]


class Meter:
    """Runs ``count`` sequential requests of one kind and records the CPU they took per request."""

    def __init__(self, count: int, backends: Backends | None) -> None:
        self.count = count
        self.backends = backends
        self.server: dict[str, list[float]] = {}
        self.backend: dict[str, list[float]] = {}

    async def run(
        self, name: str, target: Server, connection: Connection, request: Request
    ) -> None:
        backends = self.backends if name != BARE else None
        await asyncio.sleep(SETTLE)
        cpu = target.cpu_seconds()
        pg = await backends.seconds() if backends else {}
        for n in range(self.count):
            await request(connection, n)
        await asyncio.sleep(SETTLE)
        self.server.setdefault(name, []).append((target.cpu_seconds() - cpu) / self.count)
        if backends:
            spent = used_since(pg, await backends.seconds())
            self.backend.setdefault(name, []).append(spent / self.count)

    async def run_updates(self, dsn: str) -> None:
        """One backend running ``count`` one-row UPDATE transactions (autocommit): the reference
        of the backends' figures."""
        connection = await asyncpg.connect(
            dsn, server_settings={"application_name": "allocator-bench-reference"}
        )
        try:
            update = await connection.prepare(
                "UPDATE bench_row SET value = value + 1 WHERE id = $1"
            )
            pid = await connection.fetchval("SELECT pg_backend_pid()")
            await update.fetch(1)
            rng = random.Random(self.count)
            before = backend_seconds(pid) or 0.0
            for _ in range(self.count):
                await update.fetch(rng.randint(1, reference.ROWS))
            spent = (backend_seconds(pid) or 0.0) - before
            self.backend.setdefault(UPDATE, []).append(spent / self.count)
        finally:
            await connection.close()


def _ms(rounds: dict[str, list[float]]) -> tuple[dict[str, float], dict[str, list[float]]]:
    medians = {k: round(statistics.median(v) * 1000, 4) for k, v in rounds.items()}
    return medians, {k: [round(x * 1000, 4) for x in v] for k, v in rounds.items()}


async def _expect(
    connection: Connection, method: str, path: str, body: bytes, status: int
) -> bytes:
    answered, content = await connection.request(method, path, body)
    if answered != status:
        raise RuntimeError(f"{method} {path} answered {answered}: {content[:200]!r}")
    return content


async def measure(
    allocator: Server,
    bare: Server,
    admin: asyncpg.Connection,
    dsn: str,
    range_name: str,
    cidr: str,
    count: int,
    rounds: int,
) -> dict[str, Any]:
    """Per-request CPU of each kind of request on ``allocator`` and of the references, in
    ``rounds`` interleaved rounds of ``count`` sequential requests each. ``range_name`` (of
    ``cidr``, at least ``count`` addresses) must be empty; it is left empty."""
    await reference.prepare(dsn)
    skipped = await local_postgres(admin, dsn)
    meter = Meter(count, None if skipped else Backends(admin))
    api = await Connection.open(allocator.url)
    floor = await Connection.open(bare.url)
    network = ipaddress.ip_network(cidr)
    held: list[tuple[str, str]] = []

    def body(n: int, **extra: str) -> bytes:
        return orjson.dumps({"owner": f"cpu-{time.monotonic_ns()}-{n}", **extra})

    async def allocate(connection: Connection, n: int) -> None:
        content = await _expect(
            connection, "POST", "/v1/allocations", body(n, range=range_name), 201
        )
        document = orjson.loads(content)
        held.append((document["ip"], document["owner"]))

    async def release(connection: Connection, n: int) -> None:
        ip, owner = held.pop()
        await _expect(connection, "DELETE", f"/v1/allocations/{ip}?owner={quote(owner)}", b"", 204)

    async def allocate_static(connection: Connection, n: int) -> None:
        ip = str(network[n + 1])
        content = await _expect(connection, "POST", "/v1/allocations", body(n, ip=ip), 201)
        held.append((ip, orjson.loads(content)["owner"]))

    async def read_range(connection: Connection, n: int) -> None:
        await _expect(connection, "GET", f"/v1/ranges/{range_name}", b"", 200)

    async def healthz(connection: Connection, n: int) -> None:
        await _expect(connection, "GET", "/healthz", b"", 200)

    async def bare_post(connection: Connection, n: int) -> None:
        await _expect(connection, "POST", "/v1/allocations", body(n, range=range_name), 201)

    try:
        for n in range(min(count, 50)):  # warm both servers' code paths and connections
            await allocate(api, n)
            await release(api, n)
            await bare_post(floor, n)
        for _ in range(rounds):
            await meter.run(KINDS[0], allocator, api, allocate)
            await meter.run(BARE, bare, floor, bare_post)
            if not skipped:
                await meter.run_updates(dsn)
            await meter.run(KINDS[1], allocator, api, release)
            await meter.run(BARE, bare, floor, bare_post)
            await meter.run(KINDS[2], allocator, api, allocate_static)
            for n in range(count):  # unmeasured: the range is empty again
                await release(api, n)
            await meter.run(KINDS[3], allocator, api, read_range)
            await meter.run(BARE, bare, floor, bare_post)
            await meter.run(KINDS[4], allocator, api, healthz)
    finally:
        await api.close()
        await floor.close()
    server_ms, server_rounds = _ms(meter.server)
    figures: dict[str, Any] = {
        "requests_per_round": count,
        "rounds": rounds,
        "server_ms": server_ms,
        "server_rounds_ms": server_rounds,
    }
    if skipped:
        figures["backend"] = {"skipped": skipped}
    else:
        backend_ms, backend_rounds = _ms(meter.backend)
        figures["backend"] = {
            "method": backend_method(),
            "ms": backend_ms,
            "rounds_ms": backend_rounds,
        }
    return figures
