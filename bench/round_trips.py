"""Round trips to Postgres per operation, counted on the wire.

A proxy on loopback sits between an ``allocator serve`` process and Postgres and reads what the
server sends (the frontend messages of the Postgres protocol). Each Sync (``S``, the end of an
extended-protocol exchange: Parse/Bind/Execute...) and each simple Query (``Q``) is a point where
the client waits for the server: one round trip. Each Execute and each Query is one statement.

Per operation, the request's own round trips are those on the connection whose messages carry
the request's marker (its owner, or the range it reads), sent before the HTTP answer arrived and
before the commit's notification passed by (after it the feed reads, perhaps on that same
connection), unless they carry the marker; every other round trip until the server is quiet
again (the feed's read of the new events, for example) is counted apart. The proxy answers ``N`` to an SSL request itself, so the traffic
it reads is plain.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

import orjson
from sqlalchemy.engine import make_url

from bench.http_client import Connection

SSL_REQUEST = 80877103
GSS_REQUEST = 80877104
QUIET = 0.05
"""Seconds without a message to Postgres after which the server counts as done."""


@dataclass(frozen=True, slots=True)
class Trip:
    """One round trip: when the client sent its last message, how many statements it ran, and
    whether the request's marker was in it."""

    sent: float
    statements: int
    marked: bool


@dataclass
class Link:
    """One connection of the server, as the proxy sees it."""

    trips: list[Trip] = field(default_factory=list)
    notified: list[float] = field(default_factory=list)
    """When each notification (LISTEN/NOTIFY) from Postgres passed by."""
    last_message: float = 0.0
    marker: bytes | None = None
    _statements: int = 0
    _marked: bool = False

    def message(self, kind: int, body: bytes) -> None:
        self.last_message = time.perf_counter()
        if kind in (ord("E"), ord("Q")):
            self._statements += 1
        if self.marker and kind in (ord("B"), ord("Q")) and self.marker in body:
            self._marked = True
        if kind in (ord("S"), ord("Q")):
            self.trips.append(Trip(self.last_message, self._statements, self._marked))
            self._statements, self._marked = 0, False


class Proxy:
    """Forwards loopback connections to the Postgres of ``dsn``, reading the client's messages.

    It runs on an event loop of its own, in a thread: the bench's loop may block (while a server
    starts) without stalling the server's connections."""

    def __init__(self, dsn: str) -> None:
        self._url = make_url(dsn)
        self._host = self._url.host or str(self._url.query.get("host", "")) or "127.0.0.1"
        self._port = self._url.port or 5432
        self.links: list[Link] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> str:
        """Listen on a free loopback port; return the URL of the same database through it."""
        self._thread.start()
        listening = asyncio.start_server(self._accept, "127.0.0.1", 0)
        self._server = asyncio.run_coroutine_threadsafe(listening, self._loop).result(10)
        port = int(self._server.sockets[0].getsockname()[1])
        return self._url.set(host="127.0.0.1", port=port, query={}).render_as_string(False)

    def close(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        link = Link()
        self.links.append(link)
        try:
            if self._host.startswith("/"):
                upstream = await asyncio.open_unix_connection(f"{self._host}/.s.PGSQL.{self._port}")
            else:
                upstream = await asyncio.open_connection(self._host, self._port)
            up_reader, up_writer = upstream
            back = asyncio.create_task(_pipe(up_reader, writer, link))
            try:
                await _frontend(reader, writer, up_writer, link)
            finally:
                back.cancel()
                up_writer.close()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    def mark(self, marker: bytes) -> None:
        for link in self.links:
            link.marker = marker

    def quiet_since(self) -> float:
        return max((link.last_message for link in self.links), default=0.0)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link) -> None:
    """Copy Postgres's answers to the client, noting when a notification passes; when Postgres
    closes, close the client too."""
    pending = b""
    with contextlib.suppress(OSError, asyncio.CancelledError):
        while data := await reader.read(1 << 16):
            writer.write(data)
            pending += data
            while len(pending) >= 5:
                end = 1 + int.from_bytes(pending[1:5], "big")
                if len(pending) < end:
                    break
                if pending[0] == ord("A"):
                    link.notified.append(time.perf_counter())
                pending = pending[end:]
            await writer.drain()
    writer.close()


async def _frontend(
    reader: asyncio.StreamReader,
    client: asyncio.StreamWriter,
    upstream: asyncio.StreamWriter,
    link: Link,
) -> None:
    """Forward the client's messages, counting them; answer SSL and GSS requests with ``N``."""
    while True:  # the startup phase: untyped messages
        head = await reader.readexactly(8)
        length, code = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")
        rest = await reader.readexactly(length - 8)
        if code in (SSL_REQUEST, GSS_REQUEST):
            client.write(b"N")
            continue
        upstream.write(head + rest)
        break
    while True:
        head = await reader.readexactly(5)
        body = await reader.readexactly(int.from_bytes(head[1:], "big") - 4)
        link.message(head[0], body)
        upstream.write(head + body)
        await upstream.drain()


@dataclass
class Count:
    request: list[int] = field(default_factory=list)
    other: list[int] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {
            "request": statistics.mean(self.request),
            "request_max": max(self.request),
            "statements": statistics.mean(self.statements),
            "other": statistics.mean(self.other),
            "samples": len(self.request),
        }


async def _settle(proxy: Proxy, limit: float = 2.0) -> None:
    began = time.perf_counter()
    while time.perf_counter() - began < limit:
        idle = time.perf_counter() - max(proxy.quiet_since(), began)
        if idle >= QUIET:
            return
        await asyncio.sleep(QUIET - idle)


async def count(
    proxy: Proxy,
    marker: bytes,
    send: Callable[[], Awaitable[None]],
    into: Count,
) -> None:
    """Count the round trips of one request, marked by ``marker``.

    The request's own are those on a connection that carried the marker, sent before its answer
    arrived and either before the first notification of a commit passed (the feed reads after
    it, possibly on the same connection) or carrying the marker themselves."""
    await _settle(proxy)
    proxy.mark(marker)
    before = {id(link): len(link.trips) for link in proxy.links}
    began = time.perf_counter()
    await send()
    answered = time.perf_counter()
    await _settle(proxy)
    notified = min(
        (t for link in proxy.links for t in link.notified if t >= began), default=math.inf
    )
    request = other = statements = 0
    for link in proxy.links:
        trips = link.trips[before.get(id(link), 0) :]
        if any(trip.marked for trip in trips):
            mine = [t for t in trips if t.sent <= answered and (t.sent < notified or t.marked)]
        else:
            mine = []
        request += len(mine)
        statements += sum(t.statements for t in mine)
        other += len(trips) - len(mine)
    into.request.append(request)
    into.other.append(other)
    into.statements.append(statements)


class Requests:
    """The measured requests, on one keep-alive connection."""

    def __init__(self, connection: Connection, range_name: str) -> None:
        self._connection = connection
        self._range = range_name

    async def _expect(self, method: str, path: str, body: bytes, status: int) -> bytes:
        answered, content = await self._connection.request(method, path, body)
        if answered != status:
            raise RuntimeError(f"{method} {path} answered {answered}: {content[:200]!r}")
        return content

    async def allocate(self, owner: str, held: list[str]) -> None:
        body = orjson.dumps({"owner": owner, "range": self._range})
        held.append(orjson.loads(await self._expect("POST", "/v1/allocations", body, 201))["ip"])

    async def allocate_ip(self, owner: str, ip: str) -> None:
        await self._expect("POST", "/v1/allocations", orjson.dumps({"owner": owner, "ip": ip}), 201)

    async def release(self, owner: str, ip: str | list[str]) -> None:
        address = ip if isinstance(ip, str) else ip.pop()
        await self._expect("DELETE", f"/v1/allocations/{address}?owner={quote(owner)}", b"", 204)

    async def read_range(self) -> None:
        await self._expect("GET", f"/v1/ranges/{self._range}", b"", 200)


WARM_UP = 3
"""Requests of each kind before counting: a connection prepares each statement the first time it
runs it (one more round trip), and the pool may open a connection."""


async def measure(
    proxy: Proxy, base_url: str, range_name: str, cidr: str, samples: int
) -> dict[str, Any]:
    """Round trips of each kind of request over ``samples`` requests of it (after a warm-up), on
    ``range_name`` of ``cidr``, which must be empty; it is left empty."""
    connection = await Connection.open(base_url)
    api = Requests(connection, range_name)
    kinds = ("dynamic allocation", "release", "static allocation", "GET /v1/ranges/{name}")
    counts = {kind: Count() for kind in kinds}
    network = ipaddress.ip_network(cidr)
    try:
        for n in range(WARM_UP + samples):
            owner, static_owner = f"rt-{n}-{time.monotonic_ns()}", f"rt-{n}-static"
            ip, held = str(network[1 + n % 200]), list[str]()
            steps: list[tuple[str | None, str, Callable[[], Awaitable[None]]]] = [
                ("dynamic allocation", owner, partial(api.allocate, owner, held)),
                ("release", owner, partial(api.release, owner, held)),
                ("static allocation", static_owner, partial(api.allocate_ip, static_owner, ip)),
                (None, static_owner, partial(api.release, static_owner, ip)),
                ("GET /v1/ranges/{name}", range_name, api.read_range),
            ]
            for kind, marker, send in steps:
                tally = counts[kind] if kind and n >= WARM_UP else Count()
                await count(proxy, marker.encode(), send, tally)
    finally:
        await connection.close()
    return {kind: c.figures() for kind, c in counts.items()}
