from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.api.app import create_app
from allocator.settings import Settings
from allocator.store import migration
from allocator.store.database import create_engine
from tests.database import fresh_database


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


@pytest.fixture(autouse=True)
async def clean(request: pytest.FixtureRequest) -> None:
    """Empty every table before each test that touches the database."""
    if "engine" not in request.fixturenames:
        return
    engine: AsyncEngine = request.getfixturevalue("engine")
    async with engine.begin() as connection:
        await connection.execute(
            text("TRUNCATE allocation, bitmap_block, ip_range, event RESTART IDENTITY CASCADE")
        )
        await connection.execute(
            text("UPDATE log_head SET revision = 0, compacted = 0, timeline = log_timeline()")
        )
        # One epoch, as after the migrations: tests may have started others.
        await connection.execute(text("DELETE FROM log_epoch"))
        await connection.execute(
            text(
                "INSERT INTO log_epoch (epoch, timeline, first_revision)"
                " SELECT epoch, timeline, 1 FROM log_head"
            )
        )


@pytest.fixture
async def client(engine: AsyncEngine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http
