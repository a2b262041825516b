"""Watchers arriving together share their reads of the database (``allocator.service.feed.shared_reads``):
the reads do not grow with their number, and every stream is still the whole log in order."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.api.problems import document_of
from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, Allocator
from allocator.service.feed.shared_reads import SharedReads
from allocator.service.feed.tailer import READ_SPACING
from allocator.service.feed.watch import WatchOptions, open_watch
from tests.integration.feed import Reader, tailing

OPTIONS = WatchOptions(queue=10_000, timeout_seconds=60, problem_of=document_of)
WATCHERS = 20


async def allocate(allocator: Allocator, owners: range, prefix: str) -> list[int]:
    revisions = []
    for n in owners:
        held, _ = await allocator.allocate(AllocationRequest(owner=f"{prefix}-{n}"))
        revisions.append(held.revision)
    return revisions


async def read_until(
    reader: Reader, revision: int, events: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The events (no bookmarks) up to ``revision``, after ``events`` already read."""
    events = [e for e in events or [] if e["type"] != "BOOKMARK"]
    while not events or events[-1]["revision"] < revision:
        if (event := await reader.next())["type"] != "BOOKMARK":
            events.append(event)
    return events


async def test_watchers_resuming_from_one_place_beyond_the_window_share_each_page_read(
    engine: AsyncEngine, pool: Any, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "r", "10.1.0.0/24")
    head = (await allocate(allocator, range(30), "a"))[-1]
    # Started now, the tailer holds nothing older than the head: every watcher reads pages.
    async with tailing(pool) as tailer:
        reads = SharedReads(tailer, page=10)
        reads_before = tailer.reads
        streams = await asyncio.gather(
            *(open_watch(reads, tailer, 1, None, OPTIONS) for _ in range(WATCHERS))
        )
        readers = [Reader(stream) for stream in streams]
        caught_up = await asyncio.gather(*(reader.until_live() for reader in readers))
        # Every stream is the log after 1, in order, without a gap.
        for events in caught_up:
            assert [e["revision"] for e in events] == list(range(2, head + 1))
        assert reads.page_reads == 3, "one read per page (30 events), whatever the watchers"
        # The resume checks and attach attempts wait for the tailer's reads, which they share:
        # 5 rounds each (a check, four attaches), in about as many reads.
        assert tailer.reads - reads_before <= 15 < 5 * WATCHERS
        more = await allocate(allocator, range(30, 33), "a")
        tailer.wake()
        for reader in readers:
            events = await read_until(reader, more[-1])
            assert [e["revision"] for e in events] == more
            await reader.close()


async def test_watchers_arriving_one_after_another_share_reads_spaced_in_time(pool: Any) -> None:
    """As after a restart, watchers arrive over a while, each waiting for a read of the log that
    began after it asked: the reads are spaced, not one after another for as long as they come."""
    loop = asyncio.get_running_loop()
    async with tailing(pool) as tailer:

        async def arrive(n: int) -> float:
            await asyncio.sleep(n / 1000)
            asked = loop.time()
            await tailer.fresh()
            return loop.time() - asked

        reads_before, started = tailer.reads, loop.time()
        waits = await asyncio.gather(*(arrive(n) for n in range(300)))
        elapsed = loop.time() - started
        assert tailer.reads - reads_before <= elapsed / READ_SPACING + 1 < 300
        assert min(waits) > 0


async def test_watchers_listing_together_share_one_snapshot_and_go_on_without_a_gap(
    engine: AsyncEngine, pool: Any, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "r", "10.2.0.0/22")
    await allocate(allocator, range(200), "before")
    async with tailing(pool) as tailer:
        reads = SharedReads(tailer)
        streams = await asyncio.gather(
            *(open_watch(reads, tailer, None, None, OPTIONS) for _ in range(WATCHERS))
        )
        readers = [Reader(stream) for stream in streams]
        # Writes go on while the watchers list and catch up.
        writing = asyncio.create_task(allocate(allocator, range(50), "during"))
        streams_so_far = await asyncio.gather(*(reader.until_live() for reader in readers))
        written = await writing
        tailer.wake()
        assert reads.list_reads == 1
        lists, after_lists = [], []
        for events in streams_so_far:
            end = next(n for n, e in enumerate(events) if e.get("initial_end"))
            lists.append(events[: end + 1])
            after_lists.append(events[end + 1 :])
        at = lists[0][-1]["revision"]
        assert all(listed == lists[0] for listed in lists), "one snapshot, encoded once"
        # The list is the state at its revision: what was allocated then (nothing is released).
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT host(ip) FROM allocation WHERE revision <= :at"), {"at": at}
            )
            state = {row[0] for row in rows}
        allocated = [e for e in lists[0] if e["type"] == "ALLOCATED"]
        assert {e["allocation"]["ip"] for e in allocated} == state
        assert len(allocated) == len(state) >= 200
        assert {e["revision"] for e in lists[0]} == {at}
        # Then every event after it, in order, without a gap.
        for reader, caught_up in zip(readers, after_lists, strict=True):
            events = await read_until(reader, written[-1], caught_up)
            assert [e["revision"] for e in events] == list(range(at + 1, written[-1] + 1))
            await reader.close()


async def test_watchers_attaching_at_one_place_share_its_backlog_until_the_next_read(
    engine: AsyncEngine, pool: Any, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "r", "10.3.0.0/24")
    async with tailing(pool, window=10) as tailer:
        written = await allocate(allocator, range(15), "a")
        tailer.wake()
        await tailer.fresh()
        assert tailer.head == written[-1]
        after = written[-6]
        first = await tailer.attach(after, tailer.epoch, 100, float("inf"))
        second = await tailer.attach(after, tailer.epoch, 100, float("inf"))
        other = await tailer.attach(written[-3], tailer.epoch, 100, float("inf"))
        at_head = await tailer.attach(written[-1], tailer.epoch, 100, float("inf"))
        assert first is not None and second is not None and other is not None
        assert at_head is not None and at_head[0] is None, "nothing to catch up on at the head"
        assert first[0] is not None and first[0] is second[0], "one batch, joined once, for both"
        assert [f.revision for f in first[0].frames] == written[-5:]
        assert other[0] is not None and [f.revision for f in other[0].frames] == written[-2:]
        # A read that brought events moves the window: a later watcher at the same place gets
        # them too, in its backlog (its subscription starts after them).
        more = await allocate(allocator, range(15, 17), "a")
        tailer.wake()
        await tailer.fresh()
        third = await tailer.attach(after, tailer.epoch, 100, float("inf"))
        assert third is not None and third[0] is not None and third[0] is not first[0]
        assert [f.revision for f in third[0].frames] == [*written[-5:], *more]
        assert third[1].after == more[-1]
        for attached in (first, second, other, at_head, third):
            tailer.detach(attached[1])


async def test_streams_caught_up_by_shared_pages_and_backlogs_get_every_event_once_in_order(
    engine: AsyncEngine, pool: Any, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "r", "10.4.0.0/24")
    before = await allocate(allocator, range(25), "before")
    async with tailing(pool, window=12) as tailer:
        # The window holds the newest 12 of these; older resume points are read in pages of 5,
        # whose last one overlaps the window: the seam between the two must show no repeat.
        written = await allocate(allocator, range(20), "a")
        tailer.wake()
        await tailer.fresh()
        reads = SharedReads(tailer, page=5)
        places = [before[3], before[3], written[2], written[9], written[9], written[-1]]
        streams = await asyncio.gather(
            *(open_watch(reads, tailer, since, None, OPTIONS) for since in places)
        )
        readers = [Reader(stream) for stream in streams]
        # Writes go on while they catch up.
        writing = asyncio.create_task(allocate(allocator, range(20, 26), "a"))
        caught_up = await asyncio.gather(*(reader.until_live() for reader in readers))
        more = await writing
        tailer.wake()
        for since, reader, events in zip(places, readers, caught_up, strict=True):
            events = await read_until(reader, more[-1], events)
            assert [e["revision"] for e in events] == list(range(since + 1, more[-1] + 1))
            await reader.close()
