"""A Postgres of the test's own that it may stop and start: the embedded one (pgserver's
binaries) in a temporary directory. Never the machine's shared Postgres."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from allocator.store.embedded import start_embedded


@dataclass
class RestartablePostgres:
    url: str
    data_dir: Path
    socket_dir: Path
    pg_ctl: Path
    user: str | None  # pgserver runs Postgres as its own OS user when we are root

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [str(self.pg_ctl), "-D", str(self.data_dir), *args],
            check=True,
            capture_output=True,
            timeout=60,
            user=self.user,
        )

    def stop(self) -> None:
        """Stop it the way an operator restarting it would: fast shutdown, clients cut off."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        self._pg_ctl(
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self.socket_dir}",
            "-l",
            str(self.data_dir / "log"),
            "start",
        )


@contextmanager
def restartable_postgres() -> Iterator[RestartablePostgres]:
    """Start a throwaway embedded Postgres; yield it; delete it afterwards."""
    import pgserver

    data_dir = Path(tempfile.mkdtemp(prefix="allocator-restart-pg-"))
    url, server = start_embedded(data_dir, cleanup="stop")
    info = server.get_postmaster_info()
    pg_ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    user = "pgserver" if os.geteuid() == 0 else None
    postgres = RestartablePostgres(url, data_dir, Path(info.socket_dir), pg_ctl, user)
    try:
        yield postgres
    finally:
        if (data_dir / "postmaster.pid").exists():
            postgres.stop()
        del server
        shutil.rmtree(data_dir, ignore_errors=True)
