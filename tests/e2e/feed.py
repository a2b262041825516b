"""Helpers of the event-feed tests: read a watch stream, read the log as the database has it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

DEADLINE = 20.0
"""Generous: only a broken feed takes this long, a slow machine does not."""


class Stream:
    """One open watch stream, read line by line."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, within: float = DEADLINE) -> dict[str, Any]:
        while True:
            line = await asyncio.wait_for(anext(self._lines), within)
            if line.strip():
                event: dict[str, Any] = orjson.loads(line)
                return event

    async def until(self, revision: int, within: float = DEADLINE) -> list[dict[str, Any]]:
        """Return the non-bookmark events up to ``revision`` (inclusive)."""
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(within):
            while True:
                event = await self.next()
                if event["type"] != "BOOKMARK":
                    seen.append(event)
                if event["revision"] >= revision and event["type"] != "BOOKMARK":
                    return seen
                if event["type"] == "BOOKMARK" and event["revision"] >= revision:
                    return seen

    async def live(self) -> list[dict[str, Any]]:
        """Return the events before the first BOOKMARK without initial_end (the stream is live)."""
        seen = []
        while (event := await self.next())["type"] != "BOOKMARK" or event.get("initial_end"):
            seen.append(event)
        return seen


@asynccontextmanager
async def watching(base: str, **params: Any) -> AsyncIterator[Stream]:
    async with (
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=30)) as http,
        http.stream("GET", "/v1/watch", params=params) as response,
    ):
        assert response.status_code == 200, await response.aread()
        yield Stream(response)


async def database_log(engine: AsyncEngine, after: int = 0) -> list[dict[str, Any]]:
    """Return the events after ``after`` as the log stores them."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT CAST(payload AS text) FROM event WHERE revision > :a ORDER BY revision"),
            {"a": after},
        )
        return [orjson.loads(row[0]) for row in rows]


async def allocations_table(engine: AsyncEngine) -> dict[str, str]:
    """Return ip -> owner of every allocation."""
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT host(ip), owner FROM allocation"))
        return {ip: owner for ip, owner in rows}


async def head(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT revision FROM log_head"))).scalar_one())
