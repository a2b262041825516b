"""Group commit: concurrent dynamic allocations of one process share one transaction.

Every writer ends by bumping the single ``log_head`` row, whose lock is held until commit, so
commits of writers are serialized: one allocation per transaction cannot go faster than one
commit after another. A batch of n allocations takes one head bump of n revisions and one commit.

Requests queue in the process's batcher. When no batch is running, a request starts one at once
(a lone client waits for nothing); while one runs, requests collect for at most ``WINDOW`` seconds
(or until ``max_batch`` of them) and start the next, up to ``IN_FLIGHT`` batches at a time::

    request ─┐                       ┌─ answer (or error) of each request
    request ─┼─> pending ─> batch ───┼─ answer
    request ─┘   (one transaction:   └─ leftovers run alone
                  owners, blocks, one write of n rows, n events, one head bump of n)

Each request still gets its own answer, the same it would get alone:

- an owner that already holds an address of the family gets it back (``created`` false), also
  when it asked twice in the same batch (the first asking creates it);
- a request whose owner has one in a running batch waits for that batch to end, so the same
  owner's requests never race each other within a process;
- a request that fails on its own (unknown range, family contradicting the range, no range of
  the family) gets its error and the others go on;
- a request the batch cannot serve without waiting (every block with free bits is held by
  another transaction, or the dynamic band is full) runs alone after the batch commits, where it
  may wait for a block, fall back to the static band, or get RangeFull;
- when the batch's transaction fails as a whole (for example an owner allocated by another
  process at the same moment, after the retries of ``unit_of_work.run``), every request of it runs
  alone, so a failing request never fails the others.

Revisions stay dense and in commit order: the batch's events are numbered from its one head
bump, in the order of the requests.
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from dataclasses import dataclass, field, replace

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.domain.address import Family
from allocator.domain.band import Band, BandKind
from allocator.domain.bitmap import next_free, with_bit
from allocator.domain.errors import AllocatorError, RangeNotFound
from allocator.domain.model import Allocation, Range
from allocator.service import allocations as single
from allocator.service.unit_of_work import run
from allocator.store import allocations, bitmap, ranges
from allocator.store.allocations import BlockChange

log = logging.getLogger(__name__)

MAX_BATCH = 64
"""Requests per batch at most: bounds the statement and the time blocks stay locked."""

IN_FLIGHT = 2
"""Batches running at once per process: one commits while the next prepares."""

ALONE_AT_ONCE = 8
"""Requests of a batch that run alone (leftovers, or all of a failed batch) at once, at most."""

WINDOW = 0.0005
"""Seconds a request waits for company when a batch is already running."""

Answer = tuple[Allocation, bool]


@dataclass(slots=True)
class _Pending:
    request: single.AllocationRequest
    future: asyncio.Future[Answer]


class AllocationBatcher:
    """Collects the dynamic allocations of one process and runs them in batches."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = MAX_BATCH,
        in_flight: int = IN_FLIGHT,
        window: float = WINDOW,
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.loop = asyncio.get_running_loop()
        self._in_flight = in_flight
        self._window = window
        self._pending: list[_Pending] = []
        self._running = 0
        self._busy: set[str] = set()  # owners of the requests in running batches
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def allocate(self, request: single.AllocationRequest) -> Answer:
        """``allocations.allocate``: a dynamic request joins a batch, any other runs alone."""
        if request.ip is not None or self.max_batch <= 1:
            return await single.allocate_one(self.engine, request)
        future: asyncio.Future[Answer] = self.loop.create_future()
        self._pending.append(_Pending(request, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        while self._pending and self._running < self._in_flight:
            if self._running and len(self._pending) < self.max_batch:
                if self._timer is None:
                    self._timer = self.loop.call_later(self._window, self._on_timer)
                return
            if not self._start():
                return

    def _on_timer(self) -> None:
        self._timer = None
        if self._pending and self._running < self._in_flight and self._start():
            self._dispatch()

    def _start(self) -> bool:
        """Start a batch of the pending requests; return whether there was one to start.

        A request whose owner is in a running batch waits for that batch to end, so it sees the
        outcome: the same owner's requests never race each other within a process.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch: list[_Pending] = []
        waiting: list[_Pending] = []
        for pending in self._pending:
            if pending.future.done():
                continue  # its caller went away (a closed connection): nothing to allocate
            if len(batch) < self.max_batch and pending.request.owner not in self._busy:
                batch.append(pending)
            else:
                waiting.append(pending)
        self._pending = waiting
        if not batch:
            return False
        owners = {p.request.owner for p in batch}
        self._busy |= owners
        self._running += 1
        task = self.loop.create_task(self._run(batch, owners))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, batch: list[_Pending], owners: set[str]) -> None:
        try:
            await self._execute(batch)
        finally:
            self._running -= 1
            self._busy -= owners
            self._dispatch()

    async def _execute(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            await _alone(self.engine, batch[0])
            return
        requests = [p.request for p in batch]
        try:
            outcomes = await run(self.engine, lambda c: allocate_batch(c, requests))
        except Exception as exc:
            log.debug("batch of %d failed as a whole (%r): each runs alone", len(batch), exc)
            await _each_alone(self.engine, batch)
            return
        leftovers = []
        for pending, outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                leftovers.append(pending)
            elif not pending.future.done():
                if isinstance(outcome, AllocatorError):
                    pending.future.set_exception(outcome)
                else:
                    pending.future.set_result(outcome)
        await _each_alone(self.engine, leftovers)


async def _each_alone(engine: AsyncEngine, requests: list[_Pending]) -> None:
    """Run each request in a transaction of its own: those of different owners at once, those
    of one owner one after the other, so a later one sees what an earlier one got."""
    by_owner: dict[str, list[_Pending]] = {}
    for pending in requests:
        by_owner.setdefault(pending.request.owner, []).append(pending)

    # Bounded: a failed batch of 64 must not ask the pool for 64 connections at once.
    limit = asyncio.Semaphore(ALONE_AT_ONCE)

    async def in_order(group: list[_Pending]) -> None:
        async with limit:
            for pending in group:
                await _alone(engine, pending)

    await asyncio.gather(*(in_order(group) for group in by_owner.values()))


async def _alone(engine: AsyncEngine, pending: _Pending) -> None:
    """Run one request in a transaction of its own and settle its future with the outcome."""
    try:
        answer = await single.allocate_one(engine, pending.request)
    except Exception as exc:
        if not pending.future.done():
            pending.future.set_exception(exc)
    else:
        if not pending.future.done():
            pending.future.set_result(answer)


_BATCHERS: weakref.WeakKeyDictionary[Engine, AllocationBatcher] = weakref.WeakKeyDictionary()


def batcher(engine: AsyncEngine) -> AllocationBatcher:
    """Return the batcher of ``engine`` in the running event loop, made with defaults if none."""
    found = _BATCHERS.get(engine.sync_engine)
    if found is None or found.loop is not asyncio.get_running_loop():
        found = _BATCHERS[engine.sync_engine] = AllocationBatcher(engine)
    return found


def configure(engine: AsyncEngine, *, max_batch: int = MAX_BATCH) -> AllocationBatcher:
    """Give ``engine`` a batcher of at most ``max_batch`` requests (1 turns group commit off)."""
    made = _BATCHERS[engine.sync_engine] = AllocationBatcher(engine, max_batch=max_batch)
    return made


@dataclass(slots=True)
class _HeldBlock:
    """A block the batch holds locked, with its bits as the batch has changed them."""

    range_id: int
    band: Band
    block_no: int
    bits: bytes
    taken: int = 0

    def take(self) -> int | None:
        """Set a free bit chosen from a random start; return it, or None when none is free."""
        size = self.band.block_bits(self.block_no)
        bit = next_free(self.bits, size, random.randrange(size))
        if bit is not None:
            self.bits = with_bit(self.bits, bit, True)
            self.taken += 1
        return bit


@dataclass(slots=True)
class _Blocks:
    """The blocks one batch has locked, by range and band; it never waits for one."""

    connection: AsyncConnection
    held: dict[tuple[int, BandKind], list[_HeldBlock]] = field(default_factory=dict)
    exhausted: set[tuple[int, BandKind]] = field(default_factory=set)

    async def take(self, target: Range, band: Band) -> tuple[int, int] | None:
        """Return ``(block_no, bit)`` of a free address of ``band``, now set; None when every
        block with free bits is full or held by another transaction."""
        key = (target.id, band.kind)
        mine = self.held.setdefault(key, [])
        for block in mine:
            if (bit := block.take()) is not None:
                return block.block_no, bit
        while key not in self.exhausted:
            found = await bitmap.lock_free_block(
                self.connection,
                target.id,
                band,
                eager=target.geometry.eager,
                held=[b.block_no for b in mine],
                wait=False,
            )
            if found is None:
                self.exhausted.add(key)
                break
            block = _HeldBlock(target.id, band, found.block_no, found.bits)
            mine.append(block)
            if (bit := block.take()) is not None:
                return block.block_no, bit
        return None

    def taken(self, range_id: int) -> int:
        return sum(b.taken for (r, _), blocks in self.held.items() if r == range_id for b in blocks)

    def changes(self) -> list[BlockChange]:
        return [
            BlockChange(b.range_id, b.band.kind, b.block_no, b.bits, b.taken)
            for blocks in self.held.values()
            for b in blocks
            if b.taken
        ]


Outcome = Answer | AllocatorError | None
"""The answer, the request's own error, or None: run it alone."""


async def allocate_batch(
    connection: AsyncConnection, requests: list[single.AllocationRequest]
) -> list[Outcome]:
    """Serve dynamic ``requests`` in the caller's transaction; return one outcome per request.

    Reads every range and the owners' allocations in one statement each, takes addresses from the
    dynamic bands through blocks locked without waiting, and stores the new allocations, their
    blocks, counts and events in one statement with one head bump.
    """
    every = await ranges.list_all(connection)
    by_name = {r.name: r for r in every}
    outcomes: list[Outcome] = [None] * len(requests)
    wanted: dict[int, tuple[Family, list[Range]]] = {}
    for i, request in enumerate(requests):
        try:
            named = by_name.get(request.range) if request.range else None
            if request.range and named is None:
                raise RangeNotFound(f"no range named {request.range!r}")
            family = single.request_family(request, named)
            candidates = [named] if named else [r for r in every if r.geometry.family is family]
            if not candidates:
                raise single.no_range_for(family)
        except AllocatorError as error:
            outcomes[i] = error
            continue
        wanted[i] = (family, candidates)
    keys = [(requests[i].owner, family) for i, (family, _) in wanted.items()]
    held = await allocations.by_owners(connection, keys) if keys else {}
    blocks = _Blocks(connection)
    drafts: list[tuple[int, Allocation]] = []
    drafted: dict[tuple[str, Family], int] = {}  # (owner, family) -> index in drafts
    same_as: dict[int, int] = {}  # request index -> index in drafts (a repeat of the owner)
    for i, (family, candidates) in wanted.items():
        request, key = requests[i], (requests[i].owner, family)
        if key in held:
            outcomes[i] = (held[key].allocation, False)
            continue
        if key in drafted:
            same_as[i] = drafted[key]
            continue
        for target in candidates:
            if target.free - blocks.taken(target.id) <= 0:
                continue
            band = target.geometry.band(BandKind.DYNAMIC)
            spot = await blocks.take(target, band)
            if spot is not None:
                drafted[key] = len(drafts)
                drafts.append((target.id, single.draft(request, family, target, band, *spot)))
                outcomes[i] = (drafts[-1][1], True)
                break
    if not drafts:
        return outcomes
    # Ranges' count rows in id order, as every writer of several takes them: no deadlock.
    await ranges.lock_counts(connection, {range_id for range_id, _ in drafts})
    last = await allocations.record_allocations(connection, blocks.changes(), drafts)
    stored = [replace(d, revision=last - len(drafts) + 1 + j) for j, (_, d) in enumerate(drafts)]
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, tuple) and outcome[1]:
            outcomes[i] = (stored[drafted[(outcome[0].owner, outcome[0].family)]], True)
    for i, j in same_as.items():
        outcomes[i] = (stored[j], False)
    return outcomes
