"""Connections: the SQLAlchemy engine, and a pool of plain asyncpg connections for the request
path (``connections``), whose requests are one statement each (SQLAlchemy's per-statement
machinery would cost more than the statement). The engine serves the rest (ranges, verify,
migrations, the feed's listener).

A control plane must fail fast when its database is away: every connection sets
``statement_timeout`` and ``lock_timeout``, and the pool waits at most ``pool_timeout`` for a free
connection, so a request gets a 503 instead of hanging. Connections are opened by the URL's
``Connector`` (see ``allocator.store.dsn``), which finds the primary among several hosts.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from allocator.settings import Settings
from allocator.store.connections import ConnectionPool
from allocator.store.dsn import DatabaseUrl, connector


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    """Return an engine for ``url`` whose connections all carry the service's timeouts.

    Raises InvalidDatabaseUrl.
    """
    return create_async_engine(
        "postgresql+asyncpg://",
        async_creator=connector(url, settings),
        pool_size=settings.pool_size,
        max_overflow=0,
        pool_timeout=settings.pool_timeout,
        pool_pre_ping=False,
    )


async def create_pool(url: str, settings: Settings) -> ConnectionPool:
    """Return the request path's pool for ``url`` with the engine's timeouts; connections open on
    demand. Raises InvalidDatabaseUrl."""
    return ConnectionPool(connector(url, settings), settings.pool_size)


def resolve_url(settings: Settings) -> tuple[str, object | None]:
    """Return the database URL to use and, for the embedded Postgres, the handle keeping it up.

    Raises InvalidDatabaseUrl for a configured URL that cannot be used, before anything starts.
    """
    if settings.database_url:
        DatabaseUrl.parse(settings.database_url)
        return settings.database_url, None
    from allocator.store.embedded import start_embedded

    return start_embedded(settings.data_dir)
