"""The database of commands that reach it directly (``serve``, ``db upgrade``, ``verify``)."""

from __future__ import annotations

import signal
from types import FrameType

import typer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.cli.output import EXIT_UNREACHABLE, fail
from allocator.service.unit_of_work import run
from allocator.settings import Settings
from allocator.store import migration
from allocator.store.database import resolve_url
from allocator.store.dsn import DatabaseUrl, InvalidDatabaseUrl
from allocator.store.embedded import EmbeddedPostgresUnavailable, exists

UPGRADE = "run `allocator db upgrade` first"


def database(settings: Settings, *, create: bool = True) -> tuple[str, object | None]:
    """Return the database URL (starting the embedded Postgres if none is configured) and the
    handle that keeps an embedded one running; exit 1 with the reason when there is none, 2 when
    ALLOCATOR_DATABASE_URL cannot be used. Without ``create`` (a command that only reads), an
    embedded database that was never created is not created: exit 3, saying so.

    The embedded Postgres is stopped when the command ends, by a SIGTERM or a SIGINT too.
    """
    embedded_in = None if settings.database_url else settings.data_dir
    if embedded_in is not None and not create and not exists(embedded_in):
        fail(
            f"no allocator schema in {where(settings)} (nothing was ever created there): {UPGRADE}",
            EXIT_UNREACHABLE,
        )
    try:
        url, embedded = resolve_url(settings)
    except InvalidDatabaseUrl as exc:
        typer.echo(f"error: ALLOCATOR_DATABASE_URL: {exc}", err=True)
        raise typer.Exit(2) from exc
    except EmbeddedPostgresUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if embedded_in is not None:
        typer.echo(f"embedded Postgres in {embedded_in}", err=True)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _exit)
    return url, embedded


def _exit(signum: int, frame: FrameType | None) -> None:
    """End the process as a SIGTERM or SIGINT would, but through the exit handlers that stop the
    embedded Postgres: Python runs none for a signal it leaves to the system. (The server
    shuts down first: uvicorn handles both signals while it serves, then raises them again.)"""
    raise SystemExit(128 + signum)


def where(settings: Settings) -> str:
    """Return the database the commands reach, as people name it."""
    if settings.database_url:
        return DatabaseUrl.parse(settings.database_url).where
    return f"the embedded Postgres in {settings.data_dir}"


async def require_schema(engine: AsyncEngine, settings: Settings) -> None:
    """Exit 3, saying how to make it so, unless the database's schema is the newest one."""

    async def read(connection: AsyncConnection) -> str | None:
        return await connection.run_sync(migration.current_revision)

    found = await run(engine, read, read_only=True)
    newest = migration.newest_revision()
    if found is None:
        fail(f"no allocator schema in {where(settings)}: {UPGRADE}", EXIT_UNREACHABLE)
    if found != newest:
        fail(
            f"the allocator schema in {where(settings)} is at migration {found}, this version "
            f"needs {newest}: {UPGRADE}",
            EXIT_UNREACHABLE,
        )
