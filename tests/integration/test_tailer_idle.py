"""A tailer that no one watches reads nothing: the notifications wait for the first watcher,
which still gets every event, in order, and then the live ones."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, Allocator
from allocator.service.feed.shared_reads import SharedReads
from allocator.service.feed.tailer import READ_BATCH
from allocator.service.feed.watch import open_watch
from tests.integration.feed import Reader, tailing
from tests.integration.test_shared_reads import OPTIONS, allocate, read_until


async def woken_unread(tailer: Any) -> None:
    """Wake the tailer as notifications would, and give it time to read (it must not)."""
    for _ in range(3):
        tailer.wake()
        await asyncio.sleep(0.1)


async def test_an_unwatched_tailer_reads_nothing_and_its_next_watcher_misses_nothing(
    engine: AsyncEngine, pool: Any, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "idle", "10.2.0.0/20")
    async with tailing(pool, window=100) as tailer:
        reads = tailer.reads
        await allocate(allocator, range(5), "a")
        await woken_unread(tailer)
        assert tailer.reads == reads, "no watcher: no read"
        # More than one read brings goes by unread.
        batch = await allocator.allocate_many(
            [AllocationRequest(owner=f"b-{n}") for n in range(READ_BATCH)]
        )
        await woken_unread(tailer)
        assert tailer.reads == reads

        reader = Reader(await open_watch(SharedReads(tailer), tailer, 0, None, OPTIONS))
        events = await reader.until_live()
        assert [e["revision"] for e in events] == list(range(1, batch.revision + 1))
        assert tailer.head == batch.revision
        more = await allocate(allocator, range(5, 8), "a")
        tailer.wake()
        assert [e["revision"] for e in await read_until(reader, more[-1])] == more
        await reader.close()
