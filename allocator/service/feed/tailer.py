"""The tailer: one reader of the log per server process, fanning events out to its watchers.

It reads every new event once (woken by LISTEN/NOTIFY, polling as a fallback), encodes it once
(see ``frame``), keeps the newest ``window`` frames in memory and hands each batch to every
subscription. Watchers therefore cost the database nothing while they are live.

A subscription's queue is bounded: a watcher that falls more than ``queue`` events behind is cut
off (its stream sends an ERROR event and closes, the client resumes from its last revision), so
one slow reader neither grows memory without bound nor slows the others.

    revisions:   ... floor | floor+1 ... head |  (next read)
                          '---- window -----'
    attach(after) succeeds when floor <= after <= head, in the tailer's epoch, after a read that
    began once attach was called: the backlog is the window past ``after``.

After a failover the database may hold less than the tailer read (see ``event_log``). When the
log's history no longer reaches the tailer's head, every subscription is cut off with
revision-unknown (its watcher lists again) and the window is dropped; when it does (nothing was
lost, as with synchronous replication), every subscription gets a BOOKMARK of the new epoch and
goes on. Waiting for a fresh read in ``attach`` keeps a watcher that checked its resume point
against the new primary from being served what the tailer read from the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from itertools import islice

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.domain.errors import AllocatorError, RevisionCompacted, RevisionUnknown
from allocator.service.feed.frame import Frame, bookmark, of_stored
from allocator.service.unit_of_work import run
from allocator.store.event_log import Bounds, Epoch, LogRow, history, read_after, shared_until

log = logging.getLogger(__name__)

READ_BATCH = 1000
FRESH_READ_TIMEOUT = 10.0
"""Seconds ``attach`` waits for a read of the log (the database may be away)."""


def fell_behind(limit: int) -> RevisionCompacted:
    """The error of a watcher cut off because it was more than ``limit`` events behind: the
    events it misses are no longer kept for it (the contract's ERROR with revision-compacted)."""
    return RevisionCompacted(
        f"the watcher fell more than {limit} events behind the feed; "
        "resume from the last revision received"
    )


def history_changed() -> RevisionUnknown:
    return RevisionUnknown(
        "the event log's history changed under this watcher (a failover lost revisions it had "
        "received, or the log was reset); list again (initial=true)"
    )


class Subscription:
    """The queue of one watcher: frames after ``after`` in ``epoch``, at most ``limit`` waiting."""

    def __init__(self, after: int, epoch: str, limit: int) -> None:
        self.after = after
        self.epoch = epoch
        """The epoch of what was queued last: the one the stream's bookmarks name."""
        self.limit = limit
        self.problem: AllocatorError | None = None
        self.finished = False
        """The server is stopping: the stream ends cleanly and its client resumes elsewhere."""
        self._pending: deque[Frame] = deque()
        self._wake = asyncio.Event()

    def offer(self, frames: list[Frame]) -> bool:
        """Queue ``frames`` (those after ``after``); return False once the watcher is cut off."""
        if self.problem is not None:
            return False
        if frames and frames[0].revision <= self.after:
            frames = [f for f in frames if f.revision > self.after]
        if len(self._pending) + len(frames) > self.limit:
            self.cut_off(fell_behind(self.limit))
            return False
        self._pending.extend(frames)
        if frames:
            self.after = frames[-1].revision
            self._wake.set()
        return True

    def next_epoch(self, epoch: str) -> None:
        """Queue the BOOKMARK that moves the watcher to ``epoch`` (at its position, which both
        epochs share) before any event of it."""
        self.epoch = epoch
        self._pending.append(bookmark(self.after, epoch))
        self._wake.set()

    def cut_off(self, problem: AllocatorError) -> None:
        """Stop this subscription: drop what waits (freeing its memory) and wake its stream."""
        self.problem = problem
        self._pending.clear()
        self._wake.set()

    def finish(self) -> None:
        self.finished = True
        self._wake.set()

    async def take(self, wait: float) -> list[Frame]:
        """Return what waits, waiting up to ``wait`` seconds for something (maybe nothing)."""
        if not self._pending and self.problem is None and not self.finished:
            try:
                # asyncio.timeout, not wait_for: no task per wait (it counts at many watchers),
                # and a cancellation is never lost.
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                return []
        self._wake.clear()
        frames = list(self._pending)
        self._pending.clear()
        return frames


class Tailer:
    """Reads the log after ``head`` and fans it out. Start ``run()`` as a task."""

    def __init__(self, engine: AsyncEngine, *, poll_interval: float, window: int) -> None:
        self._engine = engine
        self._poll_interval = poll_interval
        self._window: deque[Frame] = deque(maxlen=window)
        self._subscriptions: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._reads_begun = 0
        self._reads_done = 0
        self._read_done = asyncio.Condition()
        self.epoch = ""
        """The epoch of ``head``."""
        self.head = 0
        """The newest revision read (every subscription has been offered it)."""
        self.floor = 0
        """The revision just before the oldest frame in memory."""
        self.started = asyncio.Event()
        self.closing = False
        self.cut_offs = 0

    @property
    def watchers(self) -> int:
        return len(self._subscriptions)

    def wake(self) -> None:
        """Read the log now (a notification arrived)."""
        self._wake.set()

    async def run(self) -> None:
        """Read new events until cancelled; errors are logged and the read retried."""
        bounds, _ = await run(self._engine, lambda c: read_after(c, 0, 0), read_only=True)
        self._restart(bounds)
        self.started.set()
        failing = False
        while True:
            self._wake.clear()
            try:
                self._reads_begun += 1
                begun = self._reads_begun
                await self._read_new()
                async with self._read_done:
                    self._reads_done = begun
                    self._read_done.notify_all()
                if failing:
                    log.warning("reading the event log works again")
                failing = False
            except Exception as exc:  # the database may be away; keep polling, log once
                if not failing:
                    log.warning("reading the event log failed (retrying): %s", exc)
                failing = True
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
            # cancellation that stops this loop, when the wait ends at the same moment.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()

    async def attach(
        self, after: int, epoch: str, limit: int
    ) -> tuple[list[Frame], Subscription] | None:
        """Subscribe a watcher that has seen every revision up to ``after`` of ``epoch``.

        Returns the frames in memory after ``after`` and the subscription that receives every
        later one, once a read of the log that began after this call is done. Returns None when
        the watcher is not where this tailer is: ``after`` older than the memory window, ahead of
        the head, or in another epoch, or when no read succeeds in time (read the database
        first, then attach again).
        """
        wanted = self._reads_begun + 1
        self.wake()
        try:
            async with asyncio.timeout(FRESH_READ_TIMEOUT), self._read_done:
                await self._read_done.wait_for(lambda: self._reads_done >= wanted)
        except TimeoutError:
            return None
        if epoch != self.epoch or not self.floor <= after <= self.head:
            return None
        backlog = list(islice(self._window, after - self.floor, None))
        subscription = Subscription(self.head, epoch, limit)
        self._subscriptions.add(subscription)
        if self.closing:
            subscription.finish()
        return backlog, subscription

    def shut_down(self) -> None:
        """End every stream (the server is stopping; its clients resume on another replica or
        after the restart), so that stopping does not wait for watchers to leave."""
        self.closing = True
        for subscription in self._subscriptions:
            subscription.finish()

    def detach(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    async def _read_new(self) -> None:
        while True:
            bounds, rows, epochs = await run(self._engine, self._read_batch, read_only=True)
            moved = bounds.epoch != self.epoch or bounds.head < self.head
            if moved and not self._follow(bounds, epochs):
                return
            if rows:
                self._publish(rows)
            if len(rows) < READ_BATCH:
                return

    async def _read_batch(
        self, connection: AsyncConnection
    ) -> tuple[Bounds, list[LogRow], list[Epoch] | None]:
        bounds, rows = await read_after(connection, self.head, READ_BATCH)
        epochs = await history(connection) if bounds.epoch != self.epoch else None
        return bounds, rows, epochs

    def _follow(self, bounds: Bounds, epochs: list[Epoch] | None) -> bool:
        """Move to the database's epoch and head; return whether the rows just read follow on
        from ``head`` (False: the tailer restarted at the database's head)."""
        shared = bounds.head if epochs is None else shared_until(epochs, self.epoch)
        if shared is None or shared < self.head:
            log.warning(
                "the event log's history changed: head %d of epoch %s is not in it (now head %d "
                "of epoch %s); every watcher lists again",
                self.head,
                self.epoch,
                bounds.head,
                bounds.epoch,
            )
            self._restart(bounds)
            return False
        log.warning("the event log moved to epoch %s at revision %d", bounds.epoch, self.head)
        self.epoch = bounds.epoch
        for subscription in self._subscriptions:
            subscription.next_epoch(bounds.epoch)
        return True

    def _publish(self, rows: list[LogRow]) -> None:
        frames = [of_stored(row.revision, row.payload) for row in rows]
        self._window.extend(frames)
        self.head = frames[-1].revision
        self.floor = self.head - len(self._window)  # revisions are dense
        for subscription in list(self._subscriptions):
            if not subscription.offer(frames):
                self._drop(subscription)

    def _drop(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        self.cut_offs += 1
        log.info("a watcher fell behind and was cut off (%d watchers)", self.watchers)

    def _restart(self, bounds: Bounds) -> None:
        """Start over at the database's head: every watcher must list again."""
        for subscription in list(self._subscriptions):
            subscription.cut_off(history_changed())
        self._subscriptions.clear()
        self._window.clear()
        self.epoch = bounds.epoch
        self.head = self.floor = bounds.head
