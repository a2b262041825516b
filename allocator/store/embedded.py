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
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

ADVICE = (
    "install the 'pgserver' package, put Postgres' initdb and pg_ctl on PATH, "
    "or set ALLOCATOR_DATABASE_URL=postgresql://user:password@host:5432/dbname"
)


STARTER_FILE = "allocator-starter.pid"
"""The process that stops the Postgres started with binaries from PATH (pgserver keeps a list)."""


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
        with warnings.catch_warnings():
            # platformdirs warns, at import, that XDG_RUNTIME_DIR is unset (as under sudo or
            # cron) and falls back to a directory of its own, which serves as well.
            warnings.simplefilter("ignore", UserWarning)
            import pgserver
    except ImportError:
        return start_with_binaries(data_dir, cleanup=cleanup), None
    _forget_dead_holders(data_dir)
    server = pgserver.get_server(data_dir, cleanup_mode=cleanup)  # type: ignore[attr-defined]
    return str(server.get_uri()), server


def exists(data_dir: Path) -> bool:
    """Return whether a database cluster was ever created in ``data_dir``."""
    return (data_dir / "PG_VERSION").exists()


def _forget_dead_holders(data_dir: Path) -> None:
    """Take the processes that no longer run off pgserver's list of those using ``data_dir``.

    pgserver stops its Postgres when the last process on that list exits; one killed (SIGKILL,
    a crash) stays on it, and no later process would ever stop the server. With it gone, the
    next process reuses the running server and stops it as if it had started it.
    """
    from pgserver.postgres_server import PostgresServer
    from pgserver.utils import DiskList

    holders = DiskList(data_dir / ".handle_pids.json")
    with PostgresServer._lock:
        found = holders.get()
        alive = [pid for pid in found if _running(pid)]
        if alive != found:
            holders.put(alive)


def _running(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def start_with_binaries(data_dir: Path, *, cleanup: str = "stop") -> str:
    """Start Postgres in ``data_dir`` with ``initdb``/``pg_ctl`` from PATH; return its URL.

    The server is stopped when this process exits (and the data deleted with ``"delete"``).
    """
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise EmbeddedPostgresUnavailable(f"no embedded Postgres available: {ADVICE}")
    as_owner = _server_user(data_dir)
    if not exists(data_dir):
        _run(
            [*as_owner, initdb, "-D", str(data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        )
    url = f"postgresql://postgres@/postgres?host={quote(str(data_dir), safe='')}"
    status = subprocess.run([*as_owner, pg_ctl, "-D", str(data_dir), "status"], capture_output=True)
    starter = data_dir / STARTER_FILE
    if status.returncode == 0:
        if _running(int(starter.read_text().strip() or 0) if starter.exists() else 0):
            return url  # attach, and leave it to the process that started it
        # The process that started it is gone (killed): this one stops it in its place.
    else:
        options = f"-c listen_addresses='' -k {data_dir}"
        log = str(data_dir / "log")
        _run([*as_owner, pg_ctl, "-D", str(data_dir), "-o", options, "-l", log, "-w", "start"])
    starter.write_text(str(os.getpid()))

    def stop() -> None:
        command = [*as_owner, pg_ctl, "-D", str(data_dir), "-m", "fast", "-w", "stop"]
        subprocess.run(command, capture_output=True)
        starter.unlink(missing_ok=True)
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
