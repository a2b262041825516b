"""The engine: one asyncpg pool per process, with bounded waits everywhere.

A control plane must fail fast when its database is away: every connection sets
``statement_timeout`` and ``lock_timeout``, and the pool waits at most ``pool_timeout`` for a free
connection, so a request gets a 503 instead of hanging.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from allocator.settings import Settings


def async_url(url: str) -> str:
    """Return ``url`` (plain ``postgresql://``) with the driver this service uses."""
    scheme = urlsplit(url).scheme
    if scheme not in ("postgresql", "postgres", "postgresql+asyncpg"):
        raise ValueError(f"ALLOCATOR_DATABASE_URL must be a postgresql:// URL, not {scheme}://")
    return str(make_url(url).set(drivername="postgresql+asyncpg").render_as_string(False))


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    """Return an engine for ``url`` whose connections all carry the service's timeouts."""
    return create_async_engine(
        async_url(url),
        pool_size=settings.pool_size,
        max_overflow=0,
        pool_timeout=settings.pool_timeout,
        pool_pre_ping=False,
        connect_args={
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
        },
    )


def resolve_url(settings: Settings) -> tuple[str, object | None]:
    """Return the database URL to use and, for the embedded Postgres, the handle keeping it up."""
    if settings.database_url:
        return settings.database_url, None
    from allocator.store.embedded import start_embedded

    return start_embedded(settings.data_dir)
