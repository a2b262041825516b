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

from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.domain.errors import AllocatorError, InvalidRequest
from allocator.service.feed.events import list_events, resume_point, snapshot
from allocator.service.feed.frame import Frame, bookmark, error
from allocator.service.feed.tailer import Tailer

CATCH_UP_PAGE = 1000


@dataclass(frozen=True, slots=True)
class WatchOptions:
    queue: int
    bookmark_seconds: float
    timeout_seconds: float
    problem_of: Callable[[AllocatorError], dict[str, Any]]
    """Renders the problem document of an ERROR event (the HTTP layer owns the statuses)."""


def longest_timeout(server_timeout: float) -> int:
    """Return the longest ``timeout_seconds`` a client may ask of a server whose own is
    ``server_timeout``."""
    return max(1, int(server_timeout))


async def open_watch(
    engine: AsyncEngine,
    tailer: Tailer,
    since: int | None,
    epoch: str | None,
    options: WatchOptions,
    timeout_seconds: int | None = None,
) -> AsyncGenerator[list[Frame]]:
    """Return the stream of a watcher resuming after revision ``since`` of ``epoch`` (``since``
    None: list first, as initial=true; ``epoch`` None: the current one), which ends after
    ``timeout_seconds`` (None: about the server's timeout).

    Raises RevisionCompacted or RevisionUnknown for a resume point the log cannot serve,
    InvalidRequest for a timeout beyond the server's.
    """
    longest = longest_timeout(options.timeout_seconds)
    if timeout_seconds is not None and timeout_seconds > longest:
        raise InvalidRequest(
            f"timeout_seconds may be at most {longest} on this server", field="timeout_seconds"
        )
    start = None
    if since is not None:
        start = (since, (await resume_point(engine, since, epoch)).epoch)
    # Unless the client chose, a little jitter, so that watchers opened together do not all
    # reconnect together.
    timeout = timeout_seconds or options.timeout_seconds * random.uniform(0.9, 1.0)
    return _stream(engine, tailer, start, options, time.monotonic() + timeout)


async def _stream(
    engine: AsyncEngine,
    tailer: Tailer,
    start: tuple[int, str] | None,
    options: WatchOptions,
    deadline: float,
) -> AsyncGenerator[list[Frame]]:
    if start is None:
        async for listed in snapshot(engine):
            yield listed.frames
            start = (listed.bounds.head, listed.bounds.epoch)
        assert start is not None
    position, epoch = start
    # Catch up from the database until the tailer's memory window reaches the position.
    while (attached := await tailer.attach(position, epoch, options.queue)) is None:
        try:
            page = await list_events(engine, position, CATCH_UP_PAGE, epoch)
        except AllocatorError as exc:  # compacted, lost in a failover, or the database is away
            yield [error(position, options.problem_of(exc))]
            return
        if page.epoch != epoch:  # a new epoch that still holds the position
            epoch = page.epoch
            yield [bookmark(position, epoch)]
        if page.frames:
            yield page.frames
            position = page.frames[-1].revision
    backlog, subscription = attached
    try:
        if backlog:
            yield backlog
            position = backlog[-1].revision
        # Tells the client it is live (and where), as soon as it is.
        yield [bookmark(position, subscription.epoch)]
        sent_at = time.monotonic()
        while (now := time.monotonic()) < deadline:
            wait = min(options.bookmark_seconds - (now - sent_at), deadline - now)
            frames = await subscription.take(max(wait, 0.0))
            if subscription.finished:
                return
            if subscription.problem is not None:
                yield [error(position, options.problem_of(subscription.problem))]
                return
            if frames:
                position = frames[-1].revision
            elif time.monotonic() - sent_at >= options.bookmark_seconds:
                frames = [bookmark(position, subscription.epoch)]
            else:
                continue
            yield frames
            sent_at = time.monotonic()
    finally:
        tailer.detach(subscription)
