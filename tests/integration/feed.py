"""Watch streams read in process: a tailer of the test database and a reader of one stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson

from allocator.service.feed.frame import Batch
from allocator.service.feed.tailer import Tailer

WITHIN = 20.0
"""Generous: only a broken feed takes this long."""


@asynccontextmanager
async def tailing(pool: Any, *, window: int = 1000) -> AsyncIterator[Tailer]:
    """A tailer that reads the log only when woken (no listener, no polling to speak of), so a
    test decides when it sees what the database did."""
    tailer = Tailer(pool, acquire_timeout=5, poll_interval=3600, window=window)
    task = asyncio.create_task(tailer.run())
    await tailer.started.wait()
    try:
        yield tailer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Reader:
    """The events of one watch stream, read as they come."""

    def __init__(self, stream: AsyncGenerator[list[Batch]]) -> None:
        self._stream = stream
        self._pending: list[dict[str, Any]] = []

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(WITHIN):
            while not self._pending:
                taken = await anext(self._stream)
                self._pending = [orjson.loads(f.json) for b in taken for f in b.frames]
        return self._pending.pop(0)

    async def live(self) -> dict[str, Any]:
        """Read up to the first bookmark after the stream's backlog; return it."""
        while (event := await self.next())["type"] != "BOOKMARK":
            pass
        return event

    async def until_live(self) -> list[dict[str, Any]]:
        """Read up to the first bookmark that is not a list's end; return everything before it
        (with the list's ``initial_end`` bookmark)."""
        events = []
        while (event := await self.next())["type"] != "BOOKMARK" or event.get("initial_end"):
            events.append(event)
        return events

    async def close(self) -> None:
        await self._stream.aclose()
