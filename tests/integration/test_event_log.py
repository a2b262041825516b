"""The event log in the store: wake-up notifications, compaction, and reads after a revision."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import netaddr
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.domain.errors import RevisionCompacted, RevisionUnknown
from allocator.domain.range import ServiceRange
from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, Allocator
from allocator.service.feed import events
from allocator.service.feed.retention import RetentionPolicy, compact_once
from allocator.settings import Settings
from allocator.store import ranges as stored_ranges
from allocator.store.dsn import connector
from allocator.store.event_log import CHANNEL


async def test_a_commit_notifies_its_revision_and_a_rollback_nothing(
    engine: AsyncEngine, allocator: Allocator, database_url: str, settings: Settings
) -> None:
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await connector(database_url, settings)()
    try:
        await listener.add_listener(CHANNEL, lambda *args: received.put_nowait(args[3]))
        created = await ranges.create_range(engine, "r", "10.1.0.0/24")
        assert await asyncio.wait_for(received.get(), 10) == str(created.revision)
        async with engine.connect() as connection:
            await connection.begin()
            geometry = ServiceRange.of(netaddr.IPNetwork("10.2.0.0/24"))
            await stored_ranges.add(connection, "never", geometry, datetime.now(UTC))
            await connection.rollback()
        held, _ = await allocator.allocate(AllocationRequest(owner="a"))
        assert await asyncio.wait_for(received.get(), 10) == str(held.revision)
        assert held.revision == created.revision + 1, "the rolled-back revision is reused"
        assert received.empty()
    finally:
        await listener.close()


async def test_compaction_deletes_a_prefix_by_count_and_by_age(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "r", "10.1.0.0/24")
    for n in range(9):
        await allocator.allocate(AllocationRequest(owner=f"o{n}"))
    by_count = RetentionPolicy(keep_seconds=3600, keep_count=4, batch=2)
    assert await compact_once(engine, by_count) == 6
    page = await events.list_events(engine, 6, 100)
    assert [f.revision for f in page.frames] == [7, 8, 9, 10]
    with pytest.raises(RevisionCompacted):
        await events.list_events(engine, 5, 100)
    with pytest.raises(RevisionUnknown):
        await events.list_events(engine, 11, 100)
    assert await compact_once(engine, by_count) == 0, "nothing more to delete"
    # Age: everything was written before "now + 1 h"; the head itself may go too.
    by_age = RetentionPolicy(keep_seconds=-3600, keep_count=1_000_000, batch=3)
    assert await compact_once(engine, by_age) == 4
    page = await events.list_events(engine, 10, 100)
    assert (page.frames, page.head) == ([], 10), "a caught-up reader is still served"
