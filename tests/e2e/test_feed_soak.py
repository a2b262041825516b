"""A soak of the feed at fleet scale: thousands of agents watching one server for minutes while
writes go on (``-m slow``; about ten minutes).

Each agent lists first (``initial=true``), applies every event to its own table of allocations,
and resumes from its last revision and epoch whenever its stream ends (the server's watch timeout
is short, so every agent resumes several times). At the end every agent's table is the
allocations table; no agent was ever cut off (it kept reading); the server's memory stayed flat.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.server import running
from tests.e2e.feed import allocations_table, head

AGENTS = 2000
SECONDS = 600.0
WRITES_PER_SECOND = 5
HELD = 200
"""Allocations held at any time: each write allocates one and releases the oldest."""
WATCH_TIMEOUT = 60
MEMORY_GROWTH = 1.25
"""The server's resident memory at the end, at most this times what it was once all listed."""

pytestmark = pytest.mark.slow
psutil = pytest.importorskip("psutil", reason="the server's memory is read with the [bench] extra")


class Agent(asyncio.Protocol):
    """One watcher: its table of allocations and where it is in the log."""

    def __init__(self, url: str) -> None:
        self.address = urlsplit(url)
        self.table: dict[str, str] = {}
        self.position: int | None = None
        self.epoch: str | None = None
        self.listing = True
        self.problems: list[Any] = []
        self.streams = 0
        self.live = asyncio.Event()
        self.last: int | None = None
        """The revision to wait for (``reached`` is set once the agent has it)."""
        self.reached = asyncio.Event()
        self.stopping = False
        self._buffer = b""
        self._headers = True

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: self, self.address.hostname, self.address.port)
        except OSError as exc:
            if not self.stopping:
                self.problems.append(f"cannot connect: {exc}")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.streams += 1
        self._buffer, self._headers = b"", True
        if self.position is None:
            query = "initial=true"
        else:
            query = f"since={self.position}&epoch={self.epoch}"
        request = f"GET /v1/watch?{query} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n"
        transport.write(request.encode())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        data = self._buffer + data
        if self._headers:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = data
                return
            if data[9:12] != b"200":
                self.problems.append(data[:end].decode())
            self._headers = False
            data = data[end + 4 :]
        cut = data.rfind(b"\n") + 1
        self._buffer = data[cut:]
        for line in data[:cut].split(b"\n"):
            if line.startswith(b"{"):
                self.apply(orjson.loads(line))

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "ERROR":
            self.problems.append(event["problem"])
        elif kind == "BOOKMARK":
            self.epoch = event["epoch"]
            if event.get("initial_end"):
                self.listing = False
            self.position = event["revision"]
            if not self.listing:
                self.live.set()
        elif kind == "ALLOCATED":
            self.table[event["allocation"]["ip"]] = event["allocation"]["owner"]
        elif kind == "RELEASED":
            self.table.pop(event["allocation"]["ip"], None)
        if kind in ("ALLOCATED", "RELEASED") and not self.listing:
            if self.position is not None and event["revision"] != self.position + 1:
                self.problems.append(f"gap: {self.position} then {event['revision']}")
            self.position = event["revision"]
        self.wait_for(self.last)

    def wait_for(self, last: int | None) -> None:
        self.last = last
        if last is not None and self.position is not None and self.position >= last:
            self.reached.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.stopping:  # the stream ended (its timeout): resume where it stopped
            asyncio.get_running_loop().create_task(self.connect())


class Writer:
    """Allocates and releases (keeping ``HELD`` allocations) at ``WRITES_PER_SECOND``."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.held: list[dict[str, Any]] = []
        self.count = 0

    async def write(self, seconds: float) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as http:
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                self.count += 1
                created = await http.post("/v1/allocations", json={"owner": f"soak-{self.count}"})
                assert created.status_code == 201, created.text
                self.held.append(created.json())
                if len(self.held) > HELD:
                    old = self.held.pop(0)
                    gone = await http.delete(f"/v1/allocations/{old['ip']}?owner={old['owner']}")
                    assert gone.status_code == 204, gone.text
                await asyncio.sleep(1 / WRITES_PER_SECOND)


async def test_thousands_of_agents_for_minutes_each_keep_the_allocations_table(
    engine: AsyncEngine, database_url: str
) -> None:
    env = {
        "ALLOCATOR_MAX_WATCHERS_PER_TOKEN": str(AGENTS + 10),
        "ALLOCATOR_WATCH_TIMEOUT_SECONDS": str(WATCH_TIMEOUT),
    }
    with running(database_url, **env) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.post("/v1/ranges", json={"name": "soak", "cidr": "10.40.0.0/16"})
        writer = Writer(server.url)
        await writer.write(HELD / WRITES_PER_SECOND)  # the table is full from here on
        agents = [Agent(server.url) for _ in range(AGENTS)]
        for first in range(0, AGENTS, 200):
            await asyncio.gather(*(agent.connect() for agent in agents[first : first + 200]))
        async with asyncio.timeout(120):
            await asyncio.gather(*(agent.live.wait() for agent in agents))
        memory = psutil.Process(server.process.pid)
        await asyncio.sleep(WATCH_TIMEOUT)  # every agent resumed once: memory is at its level
        settled = memory.memory_info().rss
        await writer.write(SECONDS - WATCH_TIMEOUT)
        last = await head(engine)
        for agent in agents:
            agent.wait_for(last)
        async with asyncio.timeout(120):
            await asyncio.gather(*(agent.reached.wait() for agent in agents))
        grown = memory.memory_info().rss
        for agent in agents:
            agent.stopping = True
    assert [agent.problems for agent in agents if agent.problems][:3] == []
    assert min(agent.streams for agent in agents) >= SECONDS // WATCH_TIMEOUT - 1
    table = await allocations_table(engine)
    assert len(table) == HELD
    assert all(agent.table == table for agent in agents)
    assert grown <= settled * MEMORY_GROWTH, (settled, grown)
