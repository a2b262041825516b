"""Reading the event log: the poll form, resume checks, and the list of list+watch.

The watch stream itself (live events from the tailer) is in ``allocator.service.feed.watch``.

A resume point is a revision and the epoch it was read in (the ``epoch`` of the last BOOKMARK or
poll page). It is refused (revision-unknown) when that epoch's history no longer reaches it:
after a failover that lost the newest commits, the revisions past the branch name other events.
Without an epoch, the revision is taken to be of the current one (as a client that predates
epochs assumes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.domain.errors import InvalidRequest, RevisionCompacted, RevisionUnknown
from allocator.service.feed.frame import Frame, bookmark, of_event, of_stored
from allocator.service.unit_of_work import UnitOfWork, run
from allocator.store import allocations, ranges
from allocator.store.event_log import (
    EPOCH_FORM,
    Bounds,
    history,
    read_after,
    shared_until,
)

SNAPSHOT_PAGE = 1000


@dataclass(frozen=True, slots=True)
class EventPage:
    frames: list[Frame]
    head: int
    epoch: str


def check_epoch(epoch: str | None) -> None:
    """Raise InvalidRequest for an ``epoch`` that no server could have sent."""
    if epoch is not None and not EPOCH_FORM.fullmatch(epoch):
        raise InvalidRequest(f"epoch {epoch!r} is not an epoch of the event log", field="epoch")


def check_since(bounds: Bounds, since: int) -> None:
    """Raise RevisionCompacted when events after ``since`` were deleted, RevisionUnknown when
    ``since`` is beyond the head (a revision this log never had)."""
    if since < bounds.compacted:
        raise RevisionCompacted(
            f"revision {since} is compacted (oldest retained event is {bounds.compacted + 1}); "
            "list again with initial=true",
            compacted=bounds.compacted,
        )
    if since > bounds.head:
        raise RevisionUnknown(
            f"revision {since} is beyond the head revision {bounds.head}",
            head=bounds.head,
            epoch=bounds.epoch,
        )


async def check_resume(
    connection: AsyncConnection, bounds: Bounds, since: int, epoch: str | None
) -> None:
    """Raise RevisionUnknown when revision ``since`` of ``epoch`` is not in the log's history,
    and as ``check_since``."""
    if epoch is not None and epoch != bounds.epoch:
        shared = shared_until(await history(connection), epoch)
        if shared is None:
            raise RevisionUnknown(
                f"epoch {epoch} is not in the event log's history (it was lost in a failover, "
                "or the log was reset); list again with initial=true",
                head=bounds.head,
                epoch=bounds.epoch,
            )
        if since > shared:
            raise RevisionUnknown(
                f"revision {since} of epoch {epoch} was lost in a failover: the history goes on "
                f"from revision {shared} in another epoch; list again with initial=true",
                head=bounds.head,
                epoch=bounds.epoch,
            )
    check_since(bounds, since)


async def list_events(
    engine: AsyncEngine, since: int, limit: int, epoch: str | None = None
) -> EventPage:
    """Return up to ``limit`` events after ``since`` (of ``epoch``), the head revision and its
    epoch (one snapshot).

    Raises RevisionCompacted, RevisionUnknown (see ``check_resume``).
    """

    async def work(connection: AsyncConnection) -> EventPage:
        bounds, rows = await read_after(connection, since, limit)
        await check_resume(connection, bounds, since, epoch)
        frames = [of_stored(row.revision, row.payload) for row in rows]
        return EventPage(frames, bounds.head, bounds.epoch)

    return await run(engine, work, read_only=True)


async def head_of(engine: AsyncEngine) -> Bounds:
    """Return the log's bounds."""
    bounds, _ = await run(engine, lambda c: read_after(c, 0, 0), read_only=True)
    return bounds


async def resume_point(engine: AsyncEngine, since: int, epoch: str | None) -> Bounds:
    """Return the log's bounds once revision ``since`` of ``epoch`` is found resumable.

    Raises RevisionCompacted, RevisionUnknown (see ``check_resume``).
    """

    async def work(connection: AsyncConnection) -> Bounds:
        bounds, _ = await read_after(connection, 0, 0)
        await check_resume(connection, bounds, since, epoch)
        return bounds

    return await run(engine, work, read_only=True)


@dataclass(frozen=True, slots=True)
class SnapshotPage:
    frames: list[Frame]
    bounds: Bounds
    """The log as of the snapshot: its revision S is ``bounds.head``."""


async def snapshot(engine: AsyncEngine) -> AsyncIterator[SnapshotPage]:
    """Yield, in pages, a RANGE_ADDED per range then an ALLOCATED per allocation, all at one
    consistent revision S, and last the ``BOOKMARK`` with ``initial_end`` at S.

    The pages are read in one repeatable-read transaction, so they are one consistent state
    whatever commits meanwhile, and memory holds one page at a time.
    """
    async with UnitOfWork(engine, read_only=True) as uow:
        connection = uow.connection
        bounds, _ = await read_after(connection, 0, 0)
        revision = bounds.head
        yield SnapshotPage(
            [
                of_event({"type": "RANGE_ADDED", "revision": revision, "range": held.document()})
                for held in await ranges.list_all(connection)
            ],
            bounds,
        )
        after = None
        while True:
            page = await allocations.page(
                connection, range_id=None, owner=None, family=None, after=after, limit=SNAPSHOT_PAGE
            )
            yield SnapshotPage(
                [
                    of_event(
                        {"type": "ALLOCATED", "revision": revision, "allocation": a.document()}
                    )
                    for a in page
                ],
                bounds,
            )
            if len(page) < SNAPSHOT_PAGE:
                break
            after = page[-1].ip
        await uow.commit()
    yield SnapshotPage([bookmark(revision, bounds.epoch, initial_end=True)], bounds)
