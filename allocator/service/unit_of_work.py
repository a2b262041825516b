"""The unit of work: one transaction that rolls back unless ``commit()`` is called.

It is also where database failures become allocator errors: a lost connection, a pool that
stays empty or a timed-out lock is ``Unavailable`` (503, retry later), never a stack trace.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.domain.errors import Unavailable
from allocator.store.bitmap import ConcurrentChange

T = TypeVar("T")

RACE_STATES = frozenset({"40001", "40P01", "23503", "23505", "23P01"})
"""Serialization failure, deadlock, foreign key (a range deleted meanwhile), unique and exclusion
violations: a concurrent transaction won a race this one checked for; running the use case again
sees the winner and answers for it."""

UNAVAILABLE_STATES = frozenset({"55P03", "57014", "57P01", "57P02", "57P03", "53300", "25006"})
"""Lock or statement timeout, server shutting down or starting, too many connections, a server
that takes no writes (a standby, reached with ``target_session_attrs=any``)."""

ATTEMPTS = 4
RETRY_BACKOFF = 0.005
"""Seconds: the upper bound of the random pause before the first retry, doubling after."""


def sqlstate(exc: BaseException) -> str | None:
    """Return the SQLSTATE of a database error (through SQLAlchemy or straight from asyncpg), or
    None for anything else."""
    if isinstance(exc, DBAPIError):
        return getattr(exc.orig, "sqlstate", None)
    if isinstance(exc, asyncpg.PostgresError):
        state: str | None = exc.sqlstate
        return state
    return None


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot serve now (as opposed to refusing this request)."""
    if isinstance(
        exc,
        PoolTimeout
        | OSError
        | InterfaceError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError,
    ):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    state = sqlstate(exc)
    if state in UNAVAILABLE_STATES or (state or "").startswith("08"):
        return True
    return isinstance(exc, OperationalError) and state is None


class UnitOfWork:
    """``async with UnitOfWork(engine) as uow: ...; await uow.commit()``."""

    connection: AsyncConnection

    def __init__(self, engine: AsyncEngine, *, read_only: bool = False) -> None:
        self._engine = engine
        self._read_only = read_only
        self._committing = False
        self._committed = False

    async def __aenter__(self) -> Self:
        try:
            self.connection = await self._engine.connect()
            if self._read_only:
                # One snapshot for every statement: a page and its revision agree.
                await self.connection.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            await self.connection.begin()
        except Exception as exc:
            if hasattr(self, "connection"):
                await self.connection.close()
            if is_unavailable(exc):
                raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc
            raise
        return self

    async def commit(self) -> None:
        self._committing = True
        await self.connection.commit()
        self._committed = True

    def lost_connection_before_commit(self, error: Unavailable) -> bool:
        """Whether ``error`` is a connection found dead before COMMIT was sent.

        After a database restart every pooled connection is dead; SQLAlchemy notices on first
        use and discards the whole pool. A transaction whose connection died before COMMIT has
        certainly not committed, so it can run again on a fresh connection, and the first
        request after an outage need not fail. A connection lost during COMMIT leaves the
        outcome unknown: that one is reported (503), never retried blindly.
        """
        cause = error.__cause__
        return (
            not self._committing and isinstance(cause, DBAPIError) and cause.connection_invalidated
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if not self._committed:
                await self.connection.rollback()
        except Exception:  # the connection may be gone; closing below discards it
            pass
        finally:
            await self.connection.close()
        if exc is not None and is_unavailable(exc):
            raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc


async def after_lost_race(attempt: int, lost: BaseException) -> None:
    """Pause before attempt ``attempt + 1`` of a use case that lost a race; raise Unavailable
    (a 503: the client retries later) when that was the last attempt."""
    if attempt == ATTEMPTS - 1:
        raise Unavailable(
            f"the request lost {ATTEMPTS} races with concurrent writers in a row; retry"
        ) from lost
    # Racers that collided once would collide again in lockstep: spread them out.
    await asyncio.sleep(random.uniform(0, RETRY_BACKOFF * 2**attempt))


async def run(
    engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]], *, read_only: bool = False
) -> T:
    """Run ``work`` in a transaction and commit; run it again if it lost a race (see RACE_STATES).

    Raises what ``work`` raises, and Unavailable when the database cannot serve or every
    attempt lost a race (a 503: the client retries later). A pooled connection that turns out dead before COMMIT
    (the database restarted since it was opened) is replaced once, transparently.
    """
    reconnected = False
    for attempt in range(ATTEMPTS):
        uow = UnitOfWork(engine, read_only=read_only)
        try:
            async with uow:
                result = await work(uow.connection)
                await uow.commit()
                return result
        except Unavailable as exc:
            if reconnected or not uow.lost_connection_before_commit(exc):
                raise
            reconnected = True  # once: a database still down fails the fresh connection fast
        except (DBAPIError, ConcurrentChange) as exc:
            if isinstance(exc, DBAPIError) and sqlstate(exc) not in RACE_STATES:
                raise
            await after_lost_race(attempt, exc)
    raise AssertionError("unreachable")


async def statement(pool: Any, work: Callable[[Any], Awaitable[T]], *, acquire_timeout: float) -> T:
    """Run ``work`` (one statement, so one transaction and one snapshot) on a connection of the
    asyncpg ``pool``, waiting at most ``acquire_timeout`` seconds for one; Unavailable when the database
    cannot serve. There is no BEGIN or COMMIT to send: the statement commits itself."""
    try:
        async with pool.acquire(acquire_timeout) as connection:
            return await work(connection)
    except Exception as exc:
        if is_unavailable(exc):
            raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc
        raise
