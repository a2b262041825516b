"""One watcher's stream: the list (initial=true) or the catch-up from the database, then live
events from the tailer, bookmarks while idle, and an ERROR event before an abnormal end.

    since=R  ──► database pages (R, floor] ──► tailer window (floor, head] ──► live
    initial  ──► snapshot at S, BOOKMARK initial_end ──► as since=S

Every BOOKMARK names the epoch of its revision, and one comes before the first event of a new
epoch, so a client's last bookmark and last revision always make a resume point that is checked
against the log's history (see ``events``).

Preconditions (410 before the stream starts) are checked by ``open_watch`` so that the HTTP
layer can answer with a problem document; the stream itself only ever ends with an ERROR event,
at its timeout, or when the client goes away.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from allocator.domain.errors import AllocatorError, InvalidRequest
from allocator.service.feed.frame import Batch, Frame, bookmark, error
from allocator.service.feed.shared_reads import SharedReads
from allocator.service.feed.tailer import Tailer


@dataclass(frozen=True, slots=True)
class WatchOptions:
    queue: int
    timeout_seconds: float
    problem_of: Callable[[AllocatorError], dict[str, Any]]
    """Renders the problem document of an ERROR event (the HTTP layer owns the statuses)."""


def longest_timeout(server_timeout: float) -> int:
    """Return the longest ``timeout_seconds`` a client may ask of a server whose own is
    ``server_timeout``."""
    return max(1, int(server_timeout))


async def open_watch(
    reads: SharedReads,
    tailer: Tailer,
    since: int | None,
    epoch: str | None,
    options: WatchOptions,
    timeout_seconds: int | None = None,
) -> AsyncGenerator[list[Batch]]:
    """Return the stream of a watcher resuming after revision ``since`` of ``epoch`` (``since``
    None: list first, as initial=true; ``epoch`` None: the current one), which ends after
    ``timeout_seconds`` (None: about the server's timeout). Each step of the stream is what has
    accumulated for the watcher: one write.

    Raises RevisionCompacted or RevisionUnknown for a resume point the log cannot serve,
    InvalidRequest for a timeout beyond the server's, Unavailable.
    """
    longest = longest_timeout(options.timeout_seconds)
    if timeout_seconds is not None and timeout_seconds > longest:
        raise InvalidRequest(
            f"timeout_seconds may be at most {longest} on this server", field="timeout_seconds"
        )
    start = None
    if since is not None:
        start = (since, (await reads.resume_point(since, epoch)).epoch)
    # Unless the client chose, a little jitter, so that watchers opened together do not all
    # reconnect together.
    timeout = timeout_seconds or options.timeout_seconds * random.uniform(0.9, 1.0)
    return _stream(reads, tailer, start, options, time.monotonic() + timeout)


def _one(frame: Frame) -> list[Batch]:
    return [Batch([frame])]


async def _stream(
    reads: SharedReads,
    tailer: Tailer,
    start: tuple[int, str] | None,
    options: WatchOptions,
    deadline: float,
) -> AsyncGenerator[list[Batch]]:
    if start is None:
        listing = reads.listing()
        for batch in await listing.read():
            yield [batch]
        assert listing.bounds is not None
        start = (listing.bounds.head, listing.bounds.epoch)
    position, epoch = start
    # Catch up from the database until the tailer's memory window reaches the position.
    while (attached := await tailer.attach(position, epoch, options.queue, deadline)) is None:
        try:
            page = await reads.page(position, epoch)
        except AllocatorError as exc:  # compacted, lost in a failover, or the database is away
            yield _one(error(position, options.problem_of(exc)))
            return
        if page.epoch != epoch:  # a new epoch that still holds the position
            epoch = page.epoch
            yield _one(bookmark(position, epoch))
        if page.batch is not None:
            yield [page.batch]
            position = page.batch.last
    backlog, subscription = attached
    try:
        if backlog is not None:  # shared with the watchers attaching at the same place
            yield [backlog]
            position = backlog.last
        # Tells the client it is live (and where), as soon as it is.
        yield _one(bookmark(position, subscription.epoch))
        # The tailer queues events, idle bookmarks and the end (at the deadline).
        while not subscription.finished:
            taken = await subscription.take()
            if subscription.finished:
                return
            if subscription.problem is not None:
                yield _one(error(position, options.problem_of(subscription.problem)))
                return
            if taken:
                position = taken[-1].last
                yield taken
    finally:
        tailer.detach(subscription)
