"""The tailer: one reader of the log per server process, fanning events out to its watchers.

It reads every new event once (woken by LISTEN/NOTIFY, polling as a fallback), encodes it once
(see ``frame``), keeps the newest ``window`` frames in memory and hands each batch to every
subscription. Watchers therefore cost the database nothing while they are live. While no one
watches, nothing is read: the first watcher's ``attach`` reads what it needs (from the head, when
more went by than one read brings).

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
import time
from collections import deque
from itertools import islice
from typing import Any

from allocator.domain.errors import AllocatorError, RevisionCompacted, RevisionUnknown, Unavailable
from allocator.service.feed.frame import Batch, Frame, bookmark, of_stored
from allocator.service.unit_of_work import statement
from allocator.store.event_log import Bounds, Epoch, LogRow, shared_until, tail, tail_history

log = logging.getLogger(__name__)

READ_BATCH = 1000
READ_SPACING = 0.01
"""Seconds at least from the start of one read of the log to the start of the next. Watchers
that arrive together each wait for a read that began after they asked (``fresh``): arriving
over seconds, as after a restart, they kept the tailer reading back to back (2000 watchers
resuming at once, 1300 reads in 3 s). Spaced, such reads are at most a hundred a second
however many watchers come, and a new event waits at most this long for its read."""
FRESH_READ_TIMEOUT = 10.0
"""Seconds ``attach`` waits for a read of the log (the database may be away)."""
SHARED_BACKLOGS = 16
"""Backlogs kept for the watchers attaching at the same place (each up to a window's bytes)."""
TICKS_PER_BOOKMARK = 4
"""An idle stream gets a BOOKMARK after 3 to 4 ticks without anything queued."""


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
    """The queue of one watcher: batches after ``after`` in ``epoch``, at most ``limit`` frames
    waiting; its stream ends at ``deadline`` (monotonic seconds)."""

    __slots__ = (
        "_count",
        "_loop",
        "_pending",
        "_waiter",
        "after",
        "deadline",
        "epoch",
        "finished",
        "idle",
        "limit",
        "problem",
    )  # fmt: skip

    def __init__(self, after: int, epoch: str, limit: int, deadline: float) -> None:
        self.after = after
        self.epoch = epoch
        """The epoch of what was queued last: the one the stream's bookmarks name."""
        self.limit = limit
        self.deadline = deadline
        self.problem: AllocatorError | None = None
        self.finished = False
        """The stream ends cleanly (its timeout, or the server is stopping): its client
        resumes from its last revision."""
        self.idle = 0
        """Ticks of the tailer since something was queued (a BOOKMARK is due after a few)."""
        self._pending: list[Batch] = []
        self._count = 0
        self._waiter: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        """Kept: on Python 3.11 looking the running loop up makes a system call (getpid), which
        would be one per delivery."""

    def offer(self, batch: Batch) -> bool:
        """Queue ``batch`` (its frames after ``after``); return False once the watcher is cut
        off."""
        if self.problem is not None:
            return False
        if batch.frames[0].revision <= self.after:  # only right after attaching
            kept = [f for f in batch.frames if f.revision > self.after]
            if not kept:
                return True
            batch = Batch(kept)
        count = self._count + len(batch.frames)
        if count > self.limit:
            self.cut_off(fell_behind(self.limit))
            return False
        self._pending.append(batch)
        self._count = count
        self.after = batch.last
        self.idle = 0
        self._wake()
        return True

    def next_epoch(self, epoch: str) -> None:
        """Queue the BOOKMARK that moves the watcher to ``epoch`` (at its position, which both
        epochs share) before any event of it."""
        self.epoch = epoch
        self.queue(Batch([bookmark(self.after, epoch)]))

    def queue(self, batch: Batch) -> None:
        self._pending.append(batch)
        self._count += len(batch.frames)
        self.idle = 0
        self._wake()

    def cut_off(self, problem: AllocatorError) -> None:
        """Stop this subscription: drop what waits (freeing its memory) and wake its stream."""
        self.problem = problem
        self._pending.clear()
        self._count = 0
        self._wake()

    def finish(self) -> None:
        self.finished = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> list[Batch]:
        """Return what waits, waiting for something (a batch, a bookmark, the end)."""
        if not self._pending and self.problem is None and not self.finished:
            # A future, not an Event or a timeout: one wake-up per delivery is all it costs.
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        taken, self._pending, self._count = self._pending, [], 0
        return taken


class ReadRound:
    """One read of the log that watchers wait for: an Event wakes them all at once (a Condition
    would hand its lock from one to the next, a loop iteration each)."""

    __slots__ = ("ended", "failure")

    def __init__(self) -> None:
        self.ended = asyncio.Event()
        self.failure: Exception | None = None

    def end(self, failure: Exception | None) -> None:
        self.failure = failure
        self.ended.set()


class Tailer:
    """Reads the log after ``head`` and fans it out. Start ``run()`` as a task.

    Every read is one statement on a connection of the asyncpg ``pool``. Every ``tick`` it ends
    the streams past their deadline and queues a BOOKMARK for those that got nothing for
    ``bookmark_seconds`` (one timer for all, instead of one per watcher).
    """

    def __init__(
        self,
        pool: Any,
        *,
        acquire_timeout: float,
        poll_interval: float,
        window: int,
        bookmark_seconds: float = 5.0,
    ) -> None:
        self.pool = pool
        """The asyncpg pool it reads on (one statement each)."""
        self.acquire_timeout = acquire_timeout
        self._poll_interval = poll_interval
        self._window: deque[Frame] = deque(maxlen=window)
        self._backlogs: dict[int, Batch] = {}
        """The backlogs handed out since the last read, by the revision they follow."""
        self._subscriptions: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._next_read: ReadRound | None = None
        """What the watchers waiting for a read that has not begun wait on."""
        self._tick_seconds = bookmark_seconds / TICKS_PER_BOOKMARK
        self.epoch = ""
        """The epoch of ``head``."""
        self.head = 0
        """The newest revision read (every subscription has been offered it)."""
        self.floor = 0
        """The revision just before the oldest frame in memory."""
        self.bounds = Bounds(0, 0, "")
        """The log's bounds at the last read."""
        self.history: list[Epoch] = []
        """The log's epochs, read at the start and whenever the epoch changed."""
        self._unread = False
        """Whether notifications went by unread (nobody was watching)."""
        self.started = asyncio.Event()
        self.closing = False
        self.cut_offs = 0
        self.reads = 0
        """Reads of the log so far (a test can observe that watchers share them)."""

    @property
    def watchers(self) -> int:
        return len(self._subscriptions)

    def wake(self) -> None:
        """Read the log now (a notification arrived)."""
        self._wake.set()

    async def run(self) -> None:
        """Read new events until cancelled; errors are logged and the read retried."""
        bounds, _, epochs = await self._read(0, 0, with_history=True)
        self._restart(bounds, epochs)
        self.started.set()
        ticking = asyncio.create_task(self._keep_ticking(), name="event tailer ticks")
        try:
            await self._keep_reading()
        finally:
            ticking.cancel()

    async def _keep_reading(self) -> None:
        loop = asyncio.get_running_loop()
        failing = False
        while True:
            began = loop.time()
            self._wake.clear()
            this_read, self._next_read = self._next_read, None
            if this_read is None and not self._subscriptions:
                # No watcher to deliver to, and none waiting for a read (``fresh`` wakes the
                # tailer with one): the read waits until someone asks.
                self._unread = True
            else:
                failure = None
                try:
                    await self._read_new()
                    if failing:
                        log.warning("reading the event log works again")
                    failing = False
                except Exception as exc:  # the database may be away; keep polling, log once
                    if not failing:
                        log.warning("reading the event log failed (retrying): %s", exc)
                    failing = True
                    failure = exc
                if this_read is not None:
                    this_read.end(failure)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
            # cancellation that stops this loop, when the wait ends at the same moment.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()
            await asyncio.sleep(began + READ_SPACING - loop.time())

    async def fresh(self) -> None:
        """Wait for a read of the log that began after this call (every watcher waiting at
        once shares it); then ``bounds``, ``history`` and the window are as fresh as that.

        Raises Unavailable when that read failed (the database is away) or took too long.
        """
        if self._next_read is None:
            self._next_read = ReadRound()
        this_read = self._next_read
        self.wake()
        try:
            async with asyncio.timeout(FRESH_READ_TIMEOUT):
                await this_read.ended.wait()
        except TimeoutError:
            raise Unavailable("the event log could not be read in time") from None
        if this_read.failure is not None:
            raise Unavailable(f"the event log cannot be read: {type(this_read.failure).__name__}")

    async def attach(
        self, after: int, epoch: str, limit: int, deadline: float
    ) -> tuple[Batch | None, Subscription] | None:
        """Subscribe a watcher that has seen every revision up to ``after`` of ``epoch``, whose
        stream ends at ``deadline``.

        Returns the frames in memory after ``after`` (None: there are none; the batch is shared
        with the watchers attaching at the same place before the next read, see ``_backlog``)
        and the subscription that receives every later one, once a read of the log that began
        after this call is done. Returns None when the watcher is not where this tailer is:
        ``after`` older than the memory window, ahead of the head, or in another epoch, or when no
        read succeeds in time (read the database first, then attach again).
        """
        try:
            await self.fresh()
        except Unavailable:
            return None
        if epoch != self.epoch or not self.floor <= after <= self.head:
            return None
        backlog = self._backlog(after)
        subscription = Subscription(self.head, epoch, limit, deadline)
        self._subscriptions.add(subscription)
        if self.closing:
            subscription.finish()
        return backlog, subscription

    def _backlog(self, after: int) -> Batch | None:
        """Return the window's frames after ``after`` as one batch.

        Watchers reconnecting together resume from a few places (their last bookmarks): those
        attaching at the same place between two reads get the same batch, its bytes joined once
        (thousands of copies of the same hundreds of kilobytes otherwise). At most
        ``SHARED_BACKLOGS`` are kept, and none past the next read (the window moves on).
        """
        if after >= self.head:
            return None
        batch = self._backlogs.get(after)
        if batch is None:
            while len(self._backlogs) >= SHARED_BACKLOGS:
                del self._backlogs[next(iter(self._backlogs))]  # the oldest: insertion order
            frames = list(islice(self._window, after - self.floor, None))
            batch = self._backlogs[after] = Batch(frames)
        return batch

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
            bounds, rows, epochs = await self._read(self.head, READ_BATCH, with_history=False)
            moved = bounds.epoch != self.epoch or bounds.head < self.head
            if moved and not self._follow(bounds, epochs):
                return
            if self._unread and bounds.head > self.head + len(rows):
                # More went by unread than one read brings, with no one watching: start at the
                # head instead of reading it all (a watcher behind it catches up from the
                # database, as after a restart).
                self._restart(bounds, epochs)
                self._unread = False
                return
            self._unread = False
            self.bounds = bounds
            if rows:
                self._publish(rows)
            if len(rows) < READ_BATCH:
                return

    async def _read(
        self, after: int, limit: int, *, with_history: bool
    ) -> tuple[Bounds, list[LogRow], list[Epoch]]:
        """Read the bounds and the events after ``after``: one statement (the history, a second
        one, only when asked or when the epoch changed)."""

        async def work(connection: Any) -> tuple[Bounds, list[LogRow], list[Epoch]]:
            bounds, rows = await tail(connection, after, limit)
            epochs = self.history
            if with_history or bounds.epoch != self.epoch:
                epochs = await tail_history(connection)
            return bounds, rows, epochs

        self.reads += 1
        return await statement(self.pool, work, acquire_timeout=self.acquire_timeout)

    def _follow(self, bounds: Bounds, epochs: list[Epoch]) -> bool:
        """Move to the database's epoch and head; return whether the rows just read follow on
        from ``head`` (False: the tailer restarted at the database's head)."""
        shared = shared_until(epochs, self.epoch) if bounds.epoch != self.epoch else bounds.head
        if shared is None or shared < self.head:
            log.warning(
                "the event log's history changed: head %d of epoch %s is not in it (now head %d "
                "of epoch %s); every watcher lists again",
                self.head,
                self.epoch,
                bounds.head,
                bounds.epoch,
            )
            self._restart(bounds, epochs)
            return False
        log.warning("the event log moved to epoch %s at revision %d", bounds.epoch, self.head)
        self.epoch = bounds.epoch
        self.history = epochs
        for subscription in self._subscriptions:
            subscription.next_epoch(bounds.epoch)
        return True

    def _publish(self, rows: list[LogRow]) -> None:
        frames = [of_stored(row.revision, row.payload) for row in rows]
        self._window.extend(frames)
        self._backlogs.clear()
        self.head = frames[-1].revision
        self.floor = self.head - len(self._window)  # revisions are dense
        batch = Batch(frames)
        dropped = [s for s in self._subscriptions if not s.offer(batch)]
        for subscription in dropped:
            self._drop(subscription)

    async def _keep_ticking(self) -> None:
        while True:
            await asyncio.sleep(self._tick_seconds)
            self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        """End the streams past their deadline; queue a BOOKMARK for the idle ones (one frame
        for all of them at the same place)."""
        marks: dict[tuple[int, str], Batch] = {}
        for subscription in self._subscriptions:
            if now >= subscription.deadline:
                subscription.finish()
                continue
            subscription.idle += 1
            if subscription.idle >= TICKS_PER_BOOKMARK:
                place = (subscription.after, subscription.epoch)
                if (mark := marks.get(place)) is None:
                    mark = marks[place] = Batch([bookmark(*place)])
                subscription.queue(mark)

    def _drop(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        self.cut_offs += 1
        log.info("a watcher fell behind and was cut off (%d watchers)", self.watchers)

    def _restart(self, bounds: Bounds, epochs: list[Epoch]) -> None:
        """Start over at the database's head: every watcher must list again."""
        for subscription in list(self._subscriptions):
            subscription.cut_off(history_changed())
        self._subscriptions.clear()
        self._window.clear()
        self._backlogs.clear()
        self.bounds = bounds
        self.history = epochs
        self.epoch = bounds.epoch
        self.head = self.floor = bounds.head
