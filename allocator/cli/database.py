"""The database of commands that reach it directly (``serve``, ``db upgrade``, ``verify``)."""

from __future__ import annotations

import typer

from allocator.settings import Settings
from allocator.store.database import resolve_url
from allocator.store.dsn import InvalidDatabaseUrl
from allocator.store.embedded import EmbeddedPostgresUnavailable


def database(settings: Settings) -> tuple[str, object | None]:
    """Return the database URL (starting the embedded Postgres if none is configured) and the
    handle that keeps an embedded one running; exit 1 with the reason when there is none, 2 when
    ALLOCATOR_DATABASE_URL cannot be used."""
    try:
        url, embedded = resolve_url(settings)
    except InvalidDatabaseUrl as exc:
        typer.echo(f"error: ALLOCATOR_DATABASE_URL: {exc}", err=True)
        raise typer.Exit(2) from exc
    except EmbeddedPostgresUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if embedded is not None:
        typer.echo(f"embedded Postgres in {settings.data_dir}", err=True)
    return url, embedded
