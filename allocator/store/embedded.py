"""The embedded Postgres: real Postgres binaries from the ``pgserver`` wheel, in a data directory
that survives restarts, so ``allocator serve`` needs nothing else installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class EmbeddedPostgresUnavailable(RuntimeError):
    """Neither the pgserver package nor initdb/pg_ctl could provide a Postgres."""


def start_embedded(data_dir: Path, *, cleanup: str = "stop") -> tuple[str, Any]:
    """Start (or attach to) the Postgres in ``data_dir``; return its URL and a handle.

    ``cleanup`` is ``"stop"`` (stop it when this process exits, keep the data) or ``"delete"``
    (also delete the data: for throwaway test databases). Keep the handle referenced as long as
    the database is used. Raises EmbeddedPostgresUnavailable, saying what to set instead.
    """
    try:
        import pgserver
    except ImportError as exc:  # pragma: no cover - pgserver is a dependency
        raise EmbeddedPostgresUnavailable(
            "the embedded Postgres needs the 'pgserver' package, which could not be imported "
            f"({exc}); install it, or set ALLOCATOR_DATABASE_URL=postgresql://user@host:5432/db"
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode=cleanup)  # type: ignore[attr-defined]
    return str(server.get_uri()), server
