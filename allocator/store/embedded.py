"""The embedded Postgres: real Postgres binaries in a data directory that survives restarts, so
``allocator serve`` needs nothing else installed.

The binaries come from the ``pgserver`` wheel; where that package cannot be imported, from
``initdb`` and ``pg_ctl`` found on ``PATH``. Either way the server listens only on a Unix socket
inside the data directory.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

ADVICE = (
    "install the 'pgserver' package, put Postgres' initdb and pg_ctl on PATH, "
    "or set ALLOCATOR_DATABASE_URL=postgresql://user:password@host:5432/dbname"
)


class EmbeddedPostgresUnavailable(RuntimeError):
    """Neither the pgserver package nor initdb/pg_ctl could provide a Postgres."""


def start_embedded(data_dir: Path, *, cleanup: str = "stop") -> tuple[str, Any]:
    """Start (or attach to) the Postgres in ``data_dir``; return its URL and a handle.

    ``cleanup`` is ``"stop"`` (stop it when this process exits, keep the data) or ``"delete"``
    (also delete the data: for throwaway test databases). Keep the handle referenced as long as
    the database is used. Raises EmbeddedPostgresUnavailable, saying what to set instead.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        import pgserver
    except ImportError:
        return start_with_binaries(data_dir, cleanup=cleanup), None
    server = pgserver.get_server(data_dir, cleanup_mode=cleanup)  # type: ignore[attr-defined]
    return str(server.get_uri()), server


def start_with_binaries(data_dir: Path, *, cleanup: str = "stop") -> str:
    """Start Postgres in ``data_dir`` with ``initdb``/``pg_ctl`` from PATH; return its URL.

    The server is stopped when this process exits (and the data deleted with ``"delete"``).
    """
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise EmbeddedPostgresUnavailable(f"no embedded Postgres available: {ADVICE}")
    as_owner = _server_user(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        _run(
            [*as_owner, initdb, "-D", str(data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        )
    url = f"postgresql://postgres@/postgres?host={quote(str(data_dir), safe='')}"
    status = subprocess.run([*as_owner, pg_ctl, "-D", str(data_dir), "status"], capture_output=True)
    if status.returncode == 0:
        return url  # already running: attach, and leave it to the process that started it
    options = f"-c listen_addresses='' -k {data_dir}"
    log = str(data_dir / "log")
    _run([*as_owner, pg_ctl, "-D", str(data_dir), "-o", options, "-l", log, "-w", "start"])

    def stop() -> None:
        command = [*as_owner, pg_ctl, "-D", str(data_dir), "-m", "fast", "-w", "stop"]
        subprocess.run(command, capture_output=True)
        if cleanup == "delete":
            shutil.rmtree(data_dir, ignore_errors=True)

    atexit.register(stop)
    return url


def _server_user(data_dir: Path) -> list[str]:
    """Return the command prefix that runs Postgres' tools as a user other than root.

    Postgres refuses to run as root; as root, the tools run as the ``postgres`` user, who is
    given the data directory.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise EmbeddedPostgresUnavailable(
            f"Postgres cannot run as root and there is no 'postgres' user: {ADVICE}"
        ) from None
    shutil.chown(data_dir, "postgres")
    return ["runuser", "-u", "postgres", "--"]


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tool = Path(command[command.index("--") + 1 if "--" in command else 0]).name
        output = (result.stderr or result.stdout).strip()
        raise EmbeddedPostgresUnavailable(f"{tool} failed: {output}; {ADVICE}")
