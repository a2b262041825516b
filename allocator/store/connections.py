"""The request path's connection pool: asyncpg connections handed out to one statement at a time.

asyncpg's own pool costs about 0.1 ms of CPU per statement (a task for its acquire timeout and
one more for the shielded release), as much as the statement itself: every write, read and feed
read of the request path takes one. Here taking an idle connection and giving it back are a list
pop and push; only a caller that must wait for one (all ``max_size`` are in use) pays for a
timer.

A connection goes back to the pool only when the statement left it clean: a call that was
cancelled, or that left the connection closed or inside a transaction, closes it instead (the
next caller opens a new one). Statements of the request path leave no session state behind, so
there is no reset to send either.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class PoolClosed(ConnectionError):
    """The pool was closed: the server is shutting down (unavailable, as the database away)."""


class ConnectionPool:
    """At most ``max_size`` connections opened by ``connect`` on demand, reused LIFO (the most
    recently used connection is the warmest)."""

    def __init__(self, connect: Connect, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("a pool needs room for at least one connection")
        self._connect = connect
        self.max_size = max_size
        self._idle: list[asyncpg.Connection] = []
        self._opened = 0  # idle, in use, or being opened
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._closed = False

    @property
    def size(self) -> int:
        """Connections open or being opened."""
        return self._opened

    @asynccontextmanager
    async def acquire(self, within: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        """A connection for one piece of work, waiting at most ``within`` seconds for one
        (TimeoutError); raises PoolClosed, and whatever opening a connection raises."""
        connection = await self._take(within)
        clean = False
        try:
            yield connection
            clean = True
        except (asyncio.CancelledError, TimeoutError, OSError, asyncpg.InterfaceError):
            raise  # a statement may still be running, or the connection is broken
        except Exception:
            clean = True  # an error the server sent: the connection is ready for the next one
            raise
        finally:
            self._give_back(connection, clean)

    async def _take(self, within: float | None) -> asyncpg.Connection:
        while True:
            if self._closed:
                raise PoolClosed("the connection pool is closed")
            if self._idle:
                return self._idle.pop()
            if self._opened < self.max_size:
                return await self._open()
            waiter: asyncio.Future[asyncpg.Connection | None]
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(within):
                    handed = await waiter
            except BaseException:
                if not waiter.done():
                    self._waiters.remove(waiter)
                elif not waiter.cancelled() and waiter.exception() is None:
                    # Handed a connection (or room for one) just as we gave up: pass it on.
                    if (handed := waiter.result()) is not None:
                        self._give_back(handed, True)
                    else:
                        self._wake(None)
                raise
            if handed is not None:
                return handed
            # None: a connection was closed, so there is room to open one (loop again).

    async def _open(self) -> asyncpg.Connection:
        self._opened += 1
        try:
            return await self._connect()
        except BaseException:
            self._opened -= 1
            self._wake(None)
            raise

    def _give_back(self, connection: asyncpg.Connection, clean: bool) -> None:
        if not clean or self._closed or connection.is_closed() or connection.is_in_transaction():
            self._opened -= 1
            connection.terminate()
            self._wake(None)
        elif not self._wake(connection):
            self._idle.append(connection)

    def _wake(self, connection: asyncpg.Connection | None) -> bool:
        """Hand ``connection`` (None: room for one) to the first caller still waiting."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return True
        return False

    async def close(self) -> None:
        """Close the idle connections; those in use close when given back. Waiting callers
        get PoolClosed."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._opened -= len(idle)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed("the connection pool is closed"))
        await asyncio.gather(*(c.close(timeout=5) for c in idle), return_exceptions=True)
