"""The request path's connection pool: reuse, waiting, and what it never hands out again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from allocator.settings import Settings
from allocator.store.connections import ConnectionPool, PoolClosed
from allocator.store.database import create_pool


async def pid(connection: asyncpg.Connection) -> int:
    found: int = await connection.fetchval("SELECT pg_backend_pid()")
    return found


@pytest.fixture
async def single(settings: Settings, database_url: str) -> AsyncIterator[ConnectionPool]:
    pool = await create_pool(database_url, settings.model_copy(update={"pool_size": 1}))
    yield pool
    await pool.close()


async def test_a_caller_waits_for_the_connection_in_use_and_gets_it_back(
    single: ConnectionPool,
) -> None:
    held = asyncio.Event()
    release = asyncio.Event()

    async def first() -> int:
        async with single.acquire() as connection:
            held.set()
            await release.wait()
            return await pid(connection)

    task = asyncio.create_task(first())
    await held.wait()
    with pytest.raises(TimeoutError):
        async with single.acquire(0.05):
            pass
    waiting = asyncio.create_task(second_pid(single))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "one connection at most: the second caller waits"
    release.set()
    assert await waiting == await task, "handed over, not a new connection"
    assert single.size == 1


async def second_pid(pool: ConnectionPool) -> int:
    async with pool.acquire(5) as connection:
        return await pid(connection)


async def test_an_error_the_server_sent_keeps_the_connection_a_cancelled_statement_does_not(
    single: ConnectionPool,
) -> None:
    first = await second_pid(single)
    with pytest.raises(asyncpg.DivisionByZeroError):
        async with single.acquire() as connection:
            await connection.fetchval("SELECT 1 / 0")
    assert await second_pid(single) == first

    async def sleeper() -> None:
        async with single.acquire() as connection:
            await connection.execute("SELECT pg_sleep(10)")

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert single.size == 0, "the connection of a cancelled statement is closed"
    assert await second_pid(single) != first
    assert single.size == 1


async def test_a_closed_pool_refuses_its_waiting_and_later_callers(single: ConnectionPool) -> None:
    holding = asyncio.Event()

    async def hold() -> None:
        async with single.acquire():
            holding.set()
            await asyncio.sleep(0.2)

    holder = asyncio.create_task(hold())
    await holding.wait()
    waiting = asyncio.create_task(second_pid(single))
    await asyncio.sleep(0.05)
    await single.close()
    with pytest.raises(PoolClosed):
        await waiting
    await holder
    assert single.size == 0, "the connection in use closed when it came back"
    with pytest.raises(PoolClosed):
        await second_pid(single)
