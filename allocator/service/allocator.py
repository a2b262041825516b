"""The allocator: every allocation and release of a process, in calls of one write statement.

Each call of ``allocator_write`` (``allocator.store.write``) is one round trip and one commit. Every
writer ends by bumping the single ``log_head`` row, whose lock is held until commit, so writers
commit one after another; a call that carries n operations takes one bump of n and one commit, so
concurrent requests of a process share them::

    allocate ─┐                         ┌─ outcome of each, in order
    release  ─┼─> pending ─> group ─────┼─ outcome
    allocate ─┘   (one call: n ops,     └─ deferred ones run again alone
                   n events, one head bump)

When no group is running a request starts one at once (a lone client waits for nothing); while
one runs, requests collect for at most ``window`` seconds or until ``max_group`` of them, up to
``in_flight`` groups at a time. A single request is simply a group of one.

Each request gets the answer it would get alone:

- the statement applies a group's operations in order, each seeing the ones before it;
- a request whose owner is in a running group waits for that group to end, so one owner's
  requests never race each other within a process;
- an allocation that would have to wait for a block held by another transaction is deferred:
  it runs again alone, where waiting is safe (a call that holds blocks never waits for more);
- a group whose call fails as a whole (a race with another process, after which the database
  refused it) runs again one request at a time, so a failing request never fails the others.

A batch (``allocate_many``) is one client's requests in one call of their own, never split: they
are answered as if run one after the other in one transaction, and an atomic batch stores all of
them or nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import netaddr
import orjson

from allocator.domain.address import Family, family_of, format_address
from allocator.domain.errors import AllocatorError, BatchFailed, InvalidRequest, Unavailable
from allocator.domain.model import Allocation
from allocator.service.unit_of_work import (
    ATTEMPTS,
    RACE_STATES,
    after_lost_race,
    sqlstate,
    statement,
)
from allocator.store.write import BatchRefused, Kind, Operation, Outcome, write, write_batch

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_GROUP = 64
"""Operations per call at most: bounds the statement and the time its blocks stay locked."""

IN_FLIGHT = 2
"""Calls running at once per process: one commits while the next one works."""

ALONE_AT_ONCE = 8
"""Requests of a failed group that run again alone at once, at most."""

WINDOW = 0.0005
"""Seconds a request waits for company when a call is already running."""


@dataclass(frozen=True, slots=True)
class AllocationRequest:
    owner: str
    ip: netaddr.IPAddress | None = None
    range: str | None = None
    family: Family | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


Release = tuple[Allocation, int]
"""An allocation as it was when released, and the revision of its release."""

Answer = tuple[Allocation, bool] | AllocatorError
"""What one request of a batch got: the allocation and whether it is new, or its refusal."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    answers: list[Answer]
    """One per request, in order."""
    revision: int
    """The head revision after the batch."""


def _errors() -> dict[str, type[AllocatorError]]:
    found: dict[str, type[AllocatorError]] = {}
    pending = list(AllocatorError.__subclasses__())
    while pending:
        kind = pending.pop()
        found[kind.type] = kind
        pending += kind.__subclasses__()
    return found


_ERROR_OF_TYPE = _errors()


def refusal(outcome: Outcome) -> AllocatorError:
    """Return the error a refused outcome stands for."""
    assert outcome.problem is not None
    assert outcome.detail is not None
    extension = orjson.loads(outcome.extension) if outcome.extension else {}
    if outcome.problem == InvalidRequest.type:
        return InvalidRequest(outcome.detail, field=extension.get("field"))
    return _ERROR_OF_TYPE[outcome.problem](outcome.detail, **extension)


def _answer(outcome: Outcome) -> Outcome:
    if outcome.problem is not None:
        raise refusal(outcome)
    return outcome


def _allocated(outcome: Outcome) -> tuple[Allocation, bool]:
    assert outcome.body is not None
    return Allocation.of_document(orjson.loads(outcome.body)), outcome.status == 201


def _allocation(request: AllocationRequest, field: str = "") -> Operation:
    """Return the operation of ``request``; raise InvalidRequest (naming ``field``'s ``family``)
    when its family contradicts its ip."""
    if request.ip is not None and request.family and family_of(request.ip) != request.family:
        raise InvalidRequest(
            f"ip {request.ip} is {family_of(request.ip)}, but family says {request.family}",
            field=f"{field}family",
        )
    return Operation(
        Kind.ALLOCATE,
        request.owner,
        ip=format_address(request.ip) if request.ip is not None else None,
        range=request.range,
        family=str(request.family) if request.family else None,
        metadata=orjson.dumps(request.metadata).decode(),
    )


@dataclass(slots=True)
class _Pending:
    operation: Operation
    future: asyncio.Future[Outcome]


class Allocator:
    """Allocates and releases on ``pool`` (asyncpg), grouping concurrent requests."""

    def __init__(
        self,
        pool: Any,
        *,
        max_group: int = MAX_GROUP,
        in_flight: int = IN_FLIGHT,
        window: float = WINDOW,
        acquire_timeout: float = 5.0,
    ) -> None:
        self.pool = pool
        self.max_group = max_group
        self._in_flight = in_flight
        self._window = window
        self._acquire_timeout = acquire_timeout
        self._pending: list[_Pending] = []
        self._running = 0
        self._busy: set[str] = set()  # owners of the operations in running groups
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def allocate(self, request: AllocationRequest) -> tuple[Allocation, bool]:
        """Allocate an address to ``request.owner``; return it and whether it is new.

        An owner that already holds an address of the family gets it back unchanged (a retry),
        unless it asked for a different IP. Raises InvalidRequest (family contradicts ip or
        range), RangeNotFound, NoRangeForFamily, IPNotInRange, IPAlreadyAllocated (naming the
        holder), OwnerHasAllocation, RangeFull, Unavailable.
        """
        return _allocated(_answer(await self._submit(_allocation(request))))

    async def allocate_many(
        self, requests: Sequence[AllocationRequest], *, atomic: bool = True
    ) -> BatchResult:
        """Answer ``requests`` as if each ran after the one before it, in one transaction; new
        allocations take consecutive revisions in request order.

        Atomic, a refusal of any stores nothing and raises BatchFailed with every refusal;
        otherwise each request's refusal is its answer. Raises InvalidRequest (naming
        ``requests[i].family``) before anything runs, Unavailable.
        """
        operations = [_allocation(r, f"requests[{n}].") for n, r in enumerate(requests)]
        try:
            # A batch that lost a race runs again patient (see write_batch).
            outcomes, head = await self._retried(
                lambda c, attempt: write_batch(c, operations, atomic=atomic, patient=attempt > 0)
            )
        except BatchRefused as refused:
            first, outcome = refused.refusals[0]
            raise BatchFailed(
                f"{len(refused.refusals)} of {len(requests)} requests refused, nothing stored;"
                f" request {first}: {outcome.detail}",
                [(index, refusal(o)) for index, o in refused.refusals],
            ) from None
        answers = [refusal(o) if o.problem is not None else _allocated(o) for o in outcomes]
        return BatchResult(answers, head)

    async def release(self, ip: netaddr.IPAddress, owner: str | None = None) -> Release:
        """Release ``ip``; return the allocation as it was and the revision of the release.

        With ``owner``, refuse (OwnerMismatch) when someone else holds it: a late release must
        never free an address that was allocated again. Raises IPNotAllocated, Unavailable.
        """
        outcome = _answer(await self._submit(Operation(Kind.RELEASE, owner, format_address(ip))))
        assert outcome.body is not None
        assert outcome.revision is not None
        return Allocation.of_document(orjson.loads(outcome.body)), outcome.revision

    async def release_owner(self, owner: str) -> list[Release]:
        """Release every allocation of ``owner`` (both families) at once; return them in
        address order with the revision of each release."""
        outcome = _answer(await self._submit(Operation(Kind.RELEASE_OWNER, owner)))
        assert outcome.body is not None
        released = orjson.loads(outcome.body)
        return [
            (Allocation.of_document(doc), (outcome.revision or 0) + n)
            for n, doc in enumerate(released)
        ]

    async def _submit(self, operation: Operation) -> Outcome:
        if self.max_group <= 1:
            return await self._alone(operation)
        if not self._running and not self._pending:
            return await self._lone(operation)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(operation, future))
        self._dispatch()
        return await future

    async def _lone(self, operation: Operation) -> Outcome:
        """A group of one, run in the caller's task while nothing else runs: no group task to
        start and no future to settle. Requests arriving meanwhile collect as behind any group."""
        owners = self._claim([operation])
        try:
            return await self._alone(operation)
        finally:
            self._end(owners)

    def _claim(self, operations: list[Operation]) -> set[str]:
        """Count a group as running and its owners as busy; return the owners."""
        owners = {o.owner for o in operations if o.owner is not None}
        self._busy |= owners
        self._running += 1
        return owners

    def _end(self, owners: set[str]) -> None:
        """A group ended: its owners are free and the pending requests may start."""
        self._running -= 1
        self._busy -= owners
        self._dispatch()

    def _dispatch(self) -> None:
        while self._pending and self._running < self._in_flight:
            if self._running and len(self._pending) < self.max_group:
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(
                        self._window, self._on_timer
                    )
                return
            if not self._start():
                return

    def _on_timer(self) -> None:
        self._timer = None
        if self._pending and self._running < self._in_flight and self._start():
            self._dispatch()

    def _start(self) -> bool:
        """Start a group of the pending operations; return whether there was one to start."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        group: list[_Pending] = []
        waiting: list[_Pending] = []
        for pending in self._pending:
            if pending.future.done():
                continue  # its caller went away (a closed connection): nothing to do
            owner = pending.operation.owner
            if len(group) < self.max_group and owner not in self._busy:
                group.append(pending)
            else:
                waiting.append(pending)
        self._pending = waiting
        if not group:
            return False
        owners = self._claim([p.operation for p in group])
        task = asyncio.get_running_loop().create_task(self._run(group, owners))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, group: list[_Pending], owners: set[str]) -> None:
        try:
            await self._execute(group)
        finally:
            self._end(owners)

    async def _execute(self, group: list[_Pending]) -> None:
        if len(group) == 1:
            await self._settle_alone(group[0])
            return
        try:
            outcomes = await self._call([p.operation for p in group])
        except Unavailable as error:
            for pending in group:
                _settle(pending, error)
            return
        except Exception as exc:
            log.debug("a group of %d failed as a whole (%r): each runs alone", len(group), exc)
            await self._each_alone(group)
            return
        deferred = []
        for pending, outcome in zip(group, outcomes, strict=True):
            if outcome.deferred:
                deferred.append(pending)
            else:
                _settle(pending, outcome)
        await self._each_alone(deferred)

    async def _each_alone(self, group: list[_Pending]) -> None:
        """Run each operation in a call of its own: those of different owners at once, those of
        one owner one after the other, so a later one sees what an earlier one got."""
        by_owner: dict[str | None, list[_Pending]] = {}
        for n, pending in enumerate(group):
            key = pending.operation.owner if pending.operation.owner is not None else str(n)
            by_owner.setdefault(key, []).append(pending)
        # Bounded: a failed group of 64 must not ask the pool for 64 connections at once.
        limit = asyncio.Semaphore(ALONE_AT_ONCE)

        async def in_order(requests: list[_Pending]) -> None:
            async with limit:
                for pending in requests:
                    await self._settle_alone(pending)

        await asyncio.gather(*(in_order(requests) for requests in by_owner.values()))

    async def _settle_alone(self, pending: _Pending) -> None:
        try:
            outcome: Outcome | BaseException = await self._alone(pending.operation)
        except Exception as exc:
            outcome = exc
        _settle(pending, outcome)

    async def _alone(self, operation: Operation) -> Outcome:
        """Run ``operation`` in a call of its own, again after a lost race (see RACE_STATES)."""
        (outcome,) = await self._retried(lambda c, _: write(c, [operation]))
        return outcome

    async def _retried(self, work: Callable[[Any, int], Awaitable[T]]) -> T:
        """Run ``work(connection, attempt)``, again after a lost race (see RACE_STATES)."""
        for attempt in range(ATTEMPTS):

            async def attempted(connection: Any, attempt: int = attempt) -> T:
                return await work(connection, attempt)

            try:
                return await statement(self.pool, attempted, acquire_timeout=self._acquire_timeout)
            except Exception as exc:
                if sqlstate(exc) not in RACE_STATES:
                    raise
                await after_lost_race(attempt, exc)
        raise AssertionError("unreachable")

    async def _call(self, operations: Sequence[Operation]) -> list[Outcome]:
        """One call of the write statement; Unavailable when the database cannot serve."""
        return await statement(
            self.pool, lambda c: write(c, operations), acquire_timeout=self._acquire_timeout
        )


def _settle(pending: _Pending, outcome: Outcome | BaseException) -> None:
    if pending.future.done():
        return
    if isinstance(outcome, BaseException):
        pending.future.set_exception(outcome)
    else:
        pending.future.set_result(outcome)
