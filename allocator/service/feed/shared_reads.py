"""The reads of watchers that arrive together, shared: resume checks, catch-up pages, lists.

After a replica restarts its watchers all reconnect at once. Each would check its resume point,
read the events it missed page by page and (with ``initial=true``) list every allocation: work
that grows with the number of watchers. Here it does not:

- a resume check (and a watcher's starting head) is answered from a read of the tailer that
  began after the watcher asked (see ``Tailer.fresh``), which every watcher asking meanwhile
  shares;
- the watchers resuming from the same revision wait for one read of each catch-up page (one
  statement), kept ``PAGE_SHARE_SECONDS`` for those that come later;
- the watchers listing while a list is read, or within ``LIST_SHARE_SECONDS`` of its start, get
  that list (one statement, so one snapshot), encoded once; each goes on from its revision.

A shared read is as good as one made when it was: the events of a revision never change within
an epoch (a failover that loses some starts another epoch: pages read before the tailer saw it
are dropped, and the watcher meets the new epoch when it attaches), and a list is a consistent
state at its revision S, which the watcher follows with every event after S.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from allocator.service.feed.events import check_resume_in
from allocator.service.feed.frame import Batch, batches, bookmark, of_stored
from allocator.service.feed.tailer import Tailer
from allocator.service.unit_of_work import statement
from allocator.store import documents
from allocator.store.event_log import Bounds, Epoch, LogRow, epoch_name, tail, tail_history

PAGE_SHARE_SECONDS = 30.0
"""How long after it began a page read is shared with watchers that arrive later, unless the
log moved to another epoch meanwhile."""
MAX_PAGES = 100
"""Pages kept at most (about 200 kB each)."""
LIST_SHARE_SECONDS = 5.0
"""A list is shared while it is read, and this long after it began."""
CATCH_UP_PAGE = 1000
LIST_BATCH = 1000
"""Frames per chunk of a list (about 200 kB): what a stream holds while its reader is slow (the
HTTP server's copy of it waits in the connection's buffer), so at most that per listing watcher.
Each chunk is one write to every stream: with 2000 watchers listing 10000 allocations together,
chunks of 1000 took the server a quarter to a third less CPU than chunks of 250, for a peak
memory of 300 to 580 MiB instead of 340 to 450."""


@dataclass(frozen=True, slots=True)
class CatchUpPage:
    batch: Batch | None
    """The events after the page's position (None: there were none)."""
    epoch: str


@dataclass(frozen=True, slots=True)
class SharedPage:
    began: float
    epoch: str
    """The tailer's epoch when the read began: a failover since may have lost its events."""
    task: asyncio.Task[CatchUpPage]


class Listing:
    """One list: the state at one revision S (one statement, see ``documents.listing``), then
    the ``initial_end`` BOOKMARK at S; read by a task of its own and encoded once for every
    watcher that lists from it."""

    def __init__(
        self, read: Callable[[], Awaitable[documents.Listing]], forget: Callable[[Listing], None]
    ) -> None:
        """Read the list with ``read``; call ``forget`` with this listing
        ``LIST_SHARE_SECONDS`` after it began, or once it is read if that takes longer."""
        self.began = time.monotonic()
        self.done = False
        self.bounds: Bounds | None = None
        """The log as of the list: its revision S is ``bounds.head``."""
        self._forget = forget
        self._task = asyncio.create_task(self._read(read), name="shared list")
        self._task.add_done_callback(_retrieved)

    async def _read(self, read: Callable[[], Awaitable[documents.Listing]]) -> list[Batch]:
        try:
            listed = await read()
            bounds = Bounds(
                listed.head, listed.compacted, epoch_name(listed.timeline, listed.epoch)
            )
            frames = [
                of_stored(bounds.head, text) for text in (*listed.ranges, *listed.allocations)
            ]
            frames.append(bookmark(bounds.head, bounds.epoch, initial_end=True))
            self.bounds = bounds
            return batches(frames, LIST_BATCH)
        finally:
            self.done = True
            left = LIST_SHARE_SECONDS - (time.monotonic() - self.began)
            asyncio.get_running_loop().call_later(max(left, 0.0), self._forget, self)

    async def read(self) -> list[Batch]:
        """Return the list's batches, the last one its ``initial_end`` BOOKMARK.

        Raises what reading it raised (Unavailable when the database is away).
        """
        # Shielded: a watcher that goes away does not cancel the read the others wait for.
        return await asyncio.shield(self._task)


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Mark a shared read's failure as seen (its watchers may all have gone)."""
    if not task.cancelled():
        task.exception()


class SharedReads:
    """The database reads of one server's watchers, shared as described above."""

    def __init__(self, tailer: Tailer, *, page: int = CATCH_UP_PAGE) -> None:
        """Reads on the asyncpg pool of ``tailer``, ``page`` events per catch-up page."""
        self._tailer = tailer
        self._page = page
        self._pages: dict[tuple[int, str | None], SharedPage] = {}
        self._listing: Listing | None = None
        self.page_reads = 0
        self.list_reads = 0
        """Reads made so far (a test can observe that watchers share them)."""

    async def head(self) -> Bounds:
        """Return the log's bounds as of a read that began after this call.

        Raises Unavailable.
        """
        await self._tailer.fresh()
        return self._tailer.bounds

    async def resume_point(self, since: int, epoch: str | None) -> Bounds:
        """Return the log's bounds once revision ``since`` of ``epoch`` is found resumable.

        Raises RevisionCompacted, RevisionUnknown (see ``events.check_resume``), Unavailable.
        """
        bounds = await self.head()
        check_resume_in(bounds, self._tailer.history, since, epoch)
        return bounds

    async def page(self, position: int, epoch: str | None) -> CatchUpPage:
        """Return the events after ``position`` of ``epoch`` (up to a page of them) and the
        epoch the log is in.

        Raises RevisionCompacted, RevisionUnknown (see ``events.check_resume``), Unavailable.
        """
        now = time.monotonic()
        current = self._tailer.epoch
        for key, kept in list(self._pages.items()):
            if now - kept.began >= PAGE_SHARE_SECONDS or kept.epoch != current:
                del self._pages[key]
        while len(self._pages) >= MAX_PAGES:
            del self._pages[next(iter(self._pages))]  # the oldest: insertion order
        held = self._pages.get((position, epoch))
        if held is None:
            task = asyncio.create_task(self._read_page(position, epoch), name="shared page")
            task.add_done_callback(_retrieved)
            task.add_done_callback(self._forget_failed)
            held = self._pages[(position, epoch)] = SharedPage(now, current, task)
        # Shielded: a watcher that goes away does not cancel the read the others wait for.
        return await asyncio.shield(held.task)

    async def _read_page(self, position: int, epoch: str | None) -> CatchUpPage:
        """One statement (a second, the history, only when the log moved to another epoch
        than the tailer knows)."""
        self.page_reads += 1
        tailer = self._tailer

        async def work(connection: Any) -> tuple[Bounds, list[LogRow], list[Epoch]]:
            bounds, rows = await tail(connection, position, self._page)
            same = bounds.epoch == tailer.epoch
            return bounds, rows, tailer.history if same else await tail_history(connection)

        bounds, rows, epochs = await statement(
            tailer.pool, work, acquire_timeout=tailer.acquire_timeout
        )
        check_resume_in(bounds, epochs, position, epoch)
        frames = [of_stored(row.revision, row.payload) for row in rows]
        return CatchUpPage(Batch(frames) if frames else None, bounds.epoch)

    def _forget_failed(self, task: asyncio.Task[CatchUpPage]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        for key, kept in list(self._pages.items()):
            if kept.task is task:
                del self._pages[key]

    def listing(self) -> Listing:
        """Return the list still being read or begun within ``LIST_SHARE_SECONDS``, or begin
        one.

        One list at a time: under a storm, lists begun every few seconds while the earlier ones
        are still being read would each take longer, and all be held in memory at once.
        """
        listing = self._listing
        if listing is None or (
            listing.done and time.monotonic() - listing.began >= LIST_SHARE_SECONDS
        ):
            self.list_reads += 1
            listing = self._listing = Listing(self._read_listing, self._forget)
        return listing

    async def _read_listing(self) -> documents.Listing:
        tailer = self._tailer
        return await statement(
            tailer.pool, documents.listing, acquire_timeout=tailer.acquire_timeout
        )

    def _forget(self, listing: Listing) -> None:
        """Let go of ``listing`` (its memory is freed once its last watcher has sent it)."""
        if self._listing is listing:
            self._listing = None
