"""The tailer: one reader of the log per server process, fanning events out to its watchers.

It reads every new event once (woken by LISTEN/NOTIFY, polling as a fallback), encodes it once
(see ``frame``), keeps the newest ``window`` frames in memory and hands each batch to every
subscription. Watchers therefore cost the database nothing while they are live.

A subscription's queue is bounded: a watcher that falls more than ``queue`` events behind is cut
off (its stream sends an ERROR event and closes, the client resumes from its last revision), so
one slow reader neither grows memory without bound nor slows the others.

    revisions:   ... floor | floor+1 ... head |  (next read)
                          '---- window -----'
    attach(after) succeeds when after >= floor: the backlog is the window past ``after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from itertools import islice

from allocator.domain.errors import AllocatorError, RevisionCompacted, RevisionUnknown
from allocator.service.frame import Frame, of_stored
from allocator.service.reader import Reader
from allocator.store.event_log import Bounds, LogRow

log = logging.getLogger(__name__)

READ_BATCH = 1000


def fell_behind(limit: int) -> RevisionCompacted:
    """The error of a watcher cut off because it was more than ``limit`` events behind: the
    events it misses are no longer kept for it (the contract's ERROR with revision-compacted)."""
    return RevisionCompacted(
        f"the watcher fell more than {limit} events behind the feed; "
        "resume from the last revision received"
    )


def log_reset() -> RevisionUnknown:
    return RevisionUnknown("the event log was reset; list again (initial=true)")


class Subscription:
    """The queue of one watcher: frames after ``after``, at most ``limit`` waiting."""

    def __init__(self, after: int, limit: int) -> None:
        self.after = after
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
            self._wake.set()
        return True

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

    def __init__(self, reader: Reader, *, poll_interval: float, window: int) -> None:
        self._read = reader.log_after
        self._poll_interval = poll_interval
        self._window: deque[Frame] = deque(maxlen=window)
        self._subscriptions: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._epoch: uuid.UUID | None = None
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
        bounds, _ = await self._read(0, 0)
        self._restart(bounds)
        self.started.set()
        failing = False
        while True:
            self._wake.clear()
            try:
                await self._read_new()
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

    def attach(self, after: int, limit: int) -> tuple[list[Frame], Subscription] | None:
        """Subscribe a watcher that has seen every revision up to ``after``.

        Returns the frames in memory after ``after`` and the subscription that receives every
        later one, or None when ``after`` is older than the memory window (read the database
        first, then attach again).
        """
        if after < self.floor:
            return None
        backlog = list(islice(self._window, after - self.floor, None))
        subscription = Subscription(max(after, self.head), limit)
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
            bounds, rows = await self._read(self.head, READ_BATCH)
            if bounds.head < self.head or bounds.epoch != self._epoch:
                log.warning("the event log was reset (head %d < %d)", bounds.head, self.head)
                self._restart(bounds)
                return
            if rows:
                self._publish(rows)
            if len(rows) < READ_BATCH:
                return

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
        """Start over at the database's head: after a reset every watcher must list again."""
        for subscription in list(self._subscriptions):
            subscription.cut_off(log_reset())
        self._subscriptions.clear()
        self._window.clear()
        self._epoch = bounds.epoch
        self.head = self.floor = bounds.head
