"""Connections: the SQLAlchemy engine, and a plain asyncpg pool for the request path.

The request path (allocations, releases, the reads of the API) is one statement per request, so it
runs on asyncpg directly: SQLAlchemy's per-statement machinery would cost more than the statement.
The engine serves the rest (ranges, verify, migrations, the feed).

A control plane must fail fast when its database is away: every connection sets
``statement_timeout`` and ``lock_timeout``, and both pools wait at most ``pool_timeout`` for a free
connection, so a request gets a 503 instead of hanging.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from allocator.settings import Settings


def async_url(url: str) -> str:
    """Return ``url`` (plain ``postgresql://``) with the driver this service uses."""
    scheme = urlsplit(url).scheme
    if scheme not in ("postgresql", "postgres", "postgresql+asyncpg"):
        raise ValueError(f"ALLOCATOR_DATABASE_URL must be a postgresql:// URL, not {scheme}://")
    return str(make_url(url).set(drivername="postgresql+asyncpg").render_as_string(False))


def connect_args(settings: Settings) -> dict[str, Any]:
    """Return the asyncpg connection arguments every connection of the service uses."""
    return {
        "timeout": settings.connect_timeout,
        "command_timeout": settings.statement_timeout_ms / 1000 + 5
        if settings.statement_timeout_ms
        else None,
        "server_settings": {
            "timezone": "UTC",
            "statement_timeout": str(settings.statement_timeout_ms),
            "lock_timeout": str(settings.lock_timeout_ms),
            "application_name": "clusterip-allocator",
        },
    }


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    """Return an engine for ``url`` whose connections all carry the service's timeouts."""
    return create_async_engine(
        async_url(url),
        pool_size=settings.pool_size,
        max_overflow=0,
        pool_timeout=settings.pool_timeout,
        pool_pre_ping=False,
        connect_args=connect_args(settings),
    )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Statements of the request path leave no session state behind, so a connection going back
    to the pool needs no reset (asyncpg's default reset is one more round trip per request)."""


async def create_pool(url: str, settings: Settings) -> asyncpg.Pool:
    """Return an asyncpg pool for ``url`` with the engine's timeouts; connections open on demand."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn, min_size=0, max_size=settings.pool_size, reset=_keep_session, **connect_args(settings)
    )
    return pool


def resolve_url(settings: Settings) -> tuple[str, object | None]:
    """Return the database URL to use and, for the embedded Postgres, the handle keeping it up."""
    if settings.database_url:
        return settings.database_url, None
    from allocator.store.embedded import start_embedded

    return start_embedded(settings.data_dir)
