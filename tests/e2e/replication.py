"""A primary and a hot standby of the test's own: streaming replication on loopback, from the
Postgres binaries the tests already use (the pgserver wheel's, else those on PATH).

The standby is promoted, the primary stopped as a crash would stop it; never the machine's
shared Postgres.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from bench.server import free_port

DATABASE = "allocator"
STANDBY_NAME = "standby"
WAIT = 60.0
"""Generous: only a broken setup takes this long."""


def binaries() -> Path:
    """Return the directory of initdb, pg_ctl and pg_basebackup (skip the test without them)."""
    try:
        import pgserver

        found = Path(pgserver.__file__).parent / "pginstall" / "bin"
        if (found / "pg_basebackup").exists():
            return found
    except ImportError:
        pass
    on_path = shutil.which("pg_basebackup")
    if on_path is None or shutil.which("initdb") is None:
        pytest.skip("no Postgres binaries with pg_basebackup (pgserver, or on PATH)")
    return Path(on_path).parent


def server_user() -> str | None:
    """Postgres refuses to run as root: then its tools run as the user pgserver uses."""
    if os.geteuid() != 0:
        return None
    try:
        from pgserver.utils import ensure_user_exists

        ensure_user_exists("pgserver")
        return "pgserver"
    except ImportError:
        return "postgres"


@dataclass
class Node:
    name: str
    data_dir: Path
    port: int
    bin: Path
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            timeout=WAIT,
            user=self.user,
        )

    def start(self) -> None:
        self.run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.data_dir / "log"), "-w", "start"
        )

    def crash(self) -> None:
        """Stop at once, as a power cut would: no shutdown checkpoint, clients cut off."""
        self.run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")

    def promote(self) -> None:
        self.run("pg_ctl", "-D", str(self.data_dir), "-w", "promote")

    def reload(self) -> None:
        self.run("pg_ctl", "-D", str(self.data_dir), "reload")

    def configure(self, **settings: str) -> None:
        """Set ``settings`` (values as Postgres writes them) in postgresql.auto.conf, which
        overrides postgresql.conf; the last of repeated lines wins."""
        with (self.data_dir / "postgresql.auto.conf").open("a") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")

    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    async def fetchval(self, query: str, database: str = "postgres") -> object:
        connection = await asyncpg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/{database}", timeout=10
        )
        try:
            return await connection.fetchval(query)
        finally:
            await connection.close()


@dataclass
class Pair:
    primary: Node
    standby: Node

    @property
    def url(self) -> str:
        """The multi-host URL of the service: the primary is whichever accepts writes."""
        return (
            f"postgresql://postgres@127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
            f"/{DATABASE}?target_session_attrs=read-write"
        )

    async def wait_streaming(self, state: str) -> None:
        """Wait until the standby streams from the primary with ``sync_state`` ``state``."""
        query = (
            f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}'"
        )
        deadline = time.monotonic() + WAIT
        while await self.primary.fetchval(query) != state:
            assert time.monotonic() < deadline, f"the standby is not {state} after {WAIT} s"
            await asyncio.sleep(0.1)

    async def detach_standby(self) -> None:
        """Stop the standby's replication: from now on it falls behind the primary."""
        self.standby.configure(primary_conninfo="''")
        await asyncio.to_thread(self.standby.reload)
        query = "SELECT count(*) FROM pg_stat_replication"
        deadline = time.monotonic() + WAIT
        while await self.primary.fetchval(query) != 0:
            assert time.monotonic() < deadline, "the standby still streams"
            await asyncio.sleep(0.1)


@asynccontextmanager
async def primary_and_standby(*, synchronous: bool) -> AsyncIterator[Pair]:
    """Yield a running primary and hot standby (``synchronous``: the primary's commits wait for
    the standby to have flushed them); delete both afterwards. Nothing else runs meanwhile, so
    the tools run in this thread."""
    bin_dir, user = binaries(), server_user()
    root = Path(tempfile.mkdtemp(prefix="allocator-failover-"))
    if user is not None:
        shutil.chown(root, user)
    primary = Node("primary", root / "primary", free_port(), bin_dir, user)
    standby = Node("standby", root / "standby", free_port(), bin_dir, user)
    try:
        primary.run("initdb", "-D", str(primary.data_dir), "-U", "postgres", "--auth=trust")
        primary.configure(
            port=str(primary.port),
            listen_addresses="'127.0.0.1'",
            unix_socket_directories=f"'{root}'",
            fsync="off",  # a test cluster: the machine never crashes under it
            max_wal_senders="4",
            wal_keep_size="'256MB'",
            hot_standby="on",
        )
        primary.start()
        await primary.fetchval(f'CREATE DATABASE "{DATABASE}"')
        primary.run(
            "pg_basebackup",
            "-D",
            str(standby.data_dir),
            "-d",
            f"host=127.0.0.1 port={primary.port} user=postgres",
            "-X",
            "stream",
            "-c",
            "fast",
        )
        (standby.data_dir / "standby.signal").touch()
        standby.configure(
            port=str(standby.port),
            primary_conninfo=f"'host=127.0.0.1 port={primary.port} user=postgres "
            f"application_name={STANDBY_NAME}'",
        )
        if user is not None:
            shutil.chown(standby.data_dir / "standby.signal", user)
        standby.start()
        pair = Pair(primary, standby)
        await pair.wait_streaming("async")
        if synchronous:  # only now: until the standby streams, every commit would wait for it
            primary.configure(synchronous_standby_names=f"'{STANDBY_NAME}'")
            primary.reload()
            await pair.wait_streaming("sync")
        yield pair
    finally:
        for node in (standby, primary):
            if node.running():
                await asyncio.to_thread(node.crash)
        shutil.rmtree(root, ignore_errors=True)
