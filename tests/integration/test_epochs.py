"""Epochs of the event log: what a failover does to watchers and resume points.

A failover is acted out in the database itself: "the standby lacked the newest commits" is the
head taken back with its events deleted, "it was promoted" is ``log_head.timeline`` no longer
being the server's timeline (with triggers off, as replication replays rows without them). The
tests with real replication are in ``tests/e2e/test_failover.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.api.problems import document_of
from allocator.domain.errors import RevisionUnknown
from allocator.service.feed import events
from allocator.service.feed.shared_reads import SharedReads
from allocator.service.feed.tailer import Tailer
from allocator.service.feed.watch import WatchOptions, open_watch
from tests.integration.feed import Reader, tailing

OPTIONS = WatchOptions(queue=1000, timeout_seconds=60, problem_of=document_of)


@pytest.fixture
async def tailer(pool: Any) -> AsyncIterator[Tailer]:
    async with tailing(pool) as tailer:
        yield tailer


async def allocate(client: httpx.AsyncClient, owner: str) -> int:
    response = await client.post("/v1/allocations", json={"owner": owner})
    assert response.status_code == 201, response.text
    return int(response.json()["revision"])


async def five_revisions(client: httpx.AsyncClient) -> None:
    """A range (revision 1) and four allocations (2 to 5)."""
    await client.post("/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/24"})
    for owner in "abcd":
        assert await allocate(client, owner) == 1 + "_abcd".index(owner)


async def promote(engine: AsyncEngine, *, replayed_up_to: int | None = None) -> None:
    """Act out a promotion of a standby that replayed the log up to ``replayed_up_to`` (all of it
    when None): the head as the standby has it, on a timeline that is no longer the server's."""
    async with engine.begin() as connection:
        await connection.execute(text("SET LOCAL session_replication_role = replica"))
        if replayed_up_to is not None:
            await connection.execute(
                text("DELETE FROM event WHERE revision > :r"), {"r": replayed_up_to}
            )
            await connection.execute(
                text("UPDATE log_head SET revision = :r WHERE id = 1"), {"r": replayed_up_to}
            )
        await connection.execute(text("UPDATE log_head SET timeline = timeline + 1 WHERE id = 1"))


async def watch(
    engine: AsyncEngine, tailer: Tailer, since: int, epoch: str | None = None
) -> Reader:
    return Reader(await open_watch(SharedReads(tailer), tailer, since, epoch, OPTIONS))


async def test_the_first_write_on_a_new_timeline_starts_an_epoch_where_the_head_was(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await client.post("/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/24"})
    await allocate(client, "a")
    old = (await events.head_of(engine)).epoch
    await promote(engine)
    assert (await events.head_of(engine)).epoch == old, "no write yet: still the old epoch"
    assert await allocate(client, "b") == 3
    page = await events.list_events(engine, 2, 10, old)
    assert page.epoch != old and page.epoch.split("-")[0] == old.split("-")[0]
    assert [f.revision for f in page.frames] == [3], "revision 2 of the old epoch is still ours"
    assert await allocate(client, "c") == 4
    assert (await events.head_of(engine)).epoch == page.epoch, "one epoch per timeline"
    with pytest.raises(RevisionUnknown, match="lost in a failover"):
        await events.list_events(engine, 3, 10, old)


async def test_nothing_lost_moves_live_watchers_to_the_new_epoch_without_a_new_list(
    engine: AsyncEngine, client: httpx.AsyncClient, tailer: Tailer
) -> None:
    await client.post("/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/24"})
    await allocate(client, "a")
    reader = await watch(engine, tailer, 0)
    assert (await reader.next())["revision"] == 1
    assert (await reader.next())["revision"] == 2
    old = (await reader.live())["epoch"]
    await promote(engine)  # the standby had everything: synchronous replication
    assert await allocate(client, "b") == 3
    tailer.wake()
    moved = await reader.next()
    assert moved == {"type": "BOOKMARK", "revision": 2, "epoch": moved["epoch"]}
    assert moved["epoch"] != old
    allocated = await reader.next()
    assert (allocated["type"], allocated["revision"]) == ("ALLOCATED", 3)
    assert allocated["allocation"]["owner"] == "b"
    resumed = await watch(engine, tailer, 2, old)  # a watcher that saw revision 2 before
    assert (await resumed.next())["revision"] == 3
    with pytest.raises(RevisionUnknown):
        await watch(engine, tailer, 3, old)


async def test_revisions_lost_in_a_failover_make_their_watchers_list_again(
    engine: AsyncEngine, client: httpx.AsyncClient, tailer: Tailer
) -> None:
    await five_revisions(client)
    reader = await watch(engine, tailer, 0)
    for revision in range(1, 6):
        assert (await reader.next())["revision"] == revision
    old = (await reader.live())["epoch"]
    await promote(engine, replayed_up_to=3)  # revisions 4 and 5 are lost
    tailer.wake()
    error = await reader.next()
    assert error["type"] == "ERROR" and error["problem"]["type"] == "revision-unknown"
    with pytest.raises(RevisionUnknown, match="beyond the head"):
        await watch(engine, tailer, 5, old)
    assert await allocate(client, "e") == 4, "the new primary hands revision 4 out again"
    with pytest.raises(RevisionUnknown, match="lost in a failover"):
        await watch(engine, tailer, 5, old)
    with pytest.raises(RevisionUnknown, match="lost in a failover"):
        await watch(engine, tailer, 4, old)
    resumed = await watch(engine, tailer, 3, old)  # saw nothing that was lost
    event = await resumed.next()
    assert (event["revision"], event["allocation"]["owner"]) == (4, "e")


async def test_a_watcher_is_never_served_what_the_tailer_read_before_the_failover(
    engine: AsyncEngine, client: httpx.AsyncClient, tailer: Tailer
) -> None:
    await five_revisions(client)
    tailer.wake()
    reader = await watch(engine, tailer, 5)
    await reader.live()
    assert tailer.head == 5
    await promote(engine, replayed_up_to=3)
    # The tailer has not read the new primary yet; a watcher at 3 resumes from it.
    resumed = await watch(engine, tailer, 3)
    assert (await resumed.live())["revision"] == 3, "not the lost revisions 4 and 5"
    assert await allocate(client, "e") == 4
    tailer.wake()
    moved = await resumed.next()
    assert (moved["type"], moved["revision"]) == ("BOOKMARK", 3)
    event = await resumed.next()
    assert (event["revision"], event["allocation"]["owner"]) == (4, "e")
