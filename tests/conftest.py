from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.api.app import create_app
from allocator.service.allocator import Allocator
from allocator.service.reader import Reader
from allocator.settings import Settings
from allocator.store import migration
from allocator.store.database import create_engine, create_pool
from tests.database import empty_tables, fresh_database


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    # Generous timeouts: on a loaded test machine a correct test must not fail for slowness.
    return Settings(
        database_url=database_url, pool_size=40, statement_timeout_ms=60_000, lock_timeout_ms=30_000
    )


@pytest.fixture(scope="session")
async def engine(settings: Settings, database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, settings)
    await migration.upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def pool(settings: Settings, database_url: str, engine: AsyncEngine) -> AsyncIterator[Any]:
    """The request path's asyncpg pool, on the migrated test database."""
    pool = await create_pool(database_url, settings)
    yield pool
    await pool.close()


@pytest.fixture
def allocator(pool: Any, settings: Settings) -> Allocator:
    return Allocator(pool, acquire_timeout=settings.pool_timeout)


@pytest.fixture
def reader(pool: Any, settings: Settings) -> Reader:
    return Reader(pool, settings.pool_timeout)


@pytest.fixture(autouse=True)
async def clean(request: pytest.FixtureRequest) -> None:
    """Empty every table before each test that touches the database."""
    if "engine" not in request.fixturenames:
        return
    await empty_tables(request.getfixturevalue("engine"))


@pytest.fixture
async def client(engine: AsyncEngine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http
