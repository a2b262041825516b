"""Reading the event log: the poll form, resume checks, and the list of list+watch.

The watch stream itself (live events from the tailer) is in ``allocator.service.feed.watch``.

A resume point is a revision and the epoch it was read in (the ``epoch`` of the last BOOKMARK or
poll page). It is refused (revision-unknown) when that epoch's history no longer reaches it:
after a failover that lost the newest commits, the revisions past the branch name other events.
Without an epoch, the revision is taken to be of the current one (as a client that predates
epochs assumes).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.domain.errors import InvalidRequest, RevisionCompacted, RevisionUnknown
from allocator.service.feed.frame import Frame, of_stored
from allocator.service.unit_of_work import run
from allocator.store.event_log import (
    EPOCH_FORM,
    Bounds,
    Epoch,
    history,
    read_after,
    shared_until,
)


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


def check_resume_in(bounds: Bounds, epochs: list[Epoch], since: int, epoch: str | None) -> None:
    """Raise RevisionUnknown when revision ``since`` of ``epoch`` is not in the log's history
    ``epochs``, and as ``check_since``."""
    if epoch is not None and epoch != bounds.epoch:
        shared = shared_until(epochs, epoch)
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


async def check_resume(
    connection: AsyncConnection, bounds: Bounds, since: int, epoch: str | None
) -> None:
    """``check_resume_in`` with the history read on ``connection`` (only when ``epoch`` is not
    the current one)."""
    epochs = await history(connection) if epoch is not None and epoch != bounds.epoch else []
    check_resume_in(bounds, epochs, since, epoch)


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
