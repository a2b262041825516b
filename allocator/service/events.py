"""Reading the event log: the poll form, resume checks, and the list of list+watch.

The watch stream itself (live events from the tailer) is in ``allocator.service.watch``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.domain.errors import RevisionCompacted, RevisionUnknown
from allocator.service.frame import Frame, bookmark, of_event, of_stored
from allocator.service.reader import Reader
from allocator.service.unit_of_work import UnitOfWork
from allocator.store import allocations, ranges
from allocator.store.event_log import Bounds, head_revision

SNAPSHOT_PAGE = 1000


@dataclass(frozen=True, slots=True)
class EventPage:
    frames: list[Frame]
    head: int


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
            f"revision {since} is beyond the head revision {bounds.head}", head=bounds.head
        )


async def list_events(reader: Reader, since: int, limit: int) -> EventPage:
    """Return up to ``limit`` events after ``since`` and the head revision (one snapshot).

    Raises RevisionCompacted, RevisionUnknown (see ``check_since``).
    """
    bounds, rows = await reader.log_after(since, limit)
    check_since(bounds, since)
    return EventPage([of_stored(row.revision, row.payload) for row in rows], bounds.head)


async def head_of(reader: Reader) -> Bounds:
    """Return the log's bounds."""
    bounds, _ = await reader.log_after(0, 0)
    return bounds


async def snapshot(engine: AsyncEngine) -> AsyncIterator[list[Frame]]:
    """Yield, in pages, a RANGE_ADDED per range then an ALLOCATED per allocation, all at one
    consistent revision S, and last the ``BOOKMARK`` with ``initial_end`` at S.

    The pages are read in one repeatable-read transaction, so they are one consistent state
    whatever commits meanwhile, and memory holds one page at a time.
    """
    async with UnitOfWork(engine, read_only=True) as uow:
        connection = uow.connection
        revision = await head_revision(connection)
        yield [
            of_event({"type": "RANGE_ADDED", "revision": revision, "range": held.document()})
            for held in await ranges.list_all(connection)
        ]
        after = None
        while True:
            page = await allocations.page(
                connection, range_id=None, owner=None, family=None, after=after, limit=SNAPSHOT_PAGE
            )
            yield [
                of_event({"type": "ALLOCATED", "revision": revision, "allocation": a.document()})
                for a in page
            ]
            if len(page) < SNAPSHOT_PAGE:
                break
            after = page[-1].ip
        await uow.commit()
    yield [bookmark(revision, initial_end=True)]
