"""The embedded Postgres fallback: initdb and pg_ctl from PATH when pgserver is missing."""

import asyncio
import atexit
import glob
import os
import shutil
import tempfile
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from allocator.store.embedded import EmbeddedPostgresUnavailable, start_with_binaries


def test_missing_binaries_say_what_to_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EmbeddedPostgresUnavailable, match="ALLOCATOR_DATABASE_URL"):
        start_with_binaries(tmp_path / "data")


def test_binaries_on_path_serve_a_database(monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    monkeypatch.setenv("PATH", os.pathsep.join([*bin_dirs[-1:], os.environ["PATH"]]))
    if shutil.which("initdb") is None:
        pytest.skip("no initdb on this machine")
    parent = Path(tempfile.mkdtemp(prefix="allocator-fallback-"))
    parent.chmod(0o755)  # as root the server runs as the postgres user, who must reach its data
    atexit.register(shutil.rmtree, parent, True)  # registered first, so it runs after the stop
    data = parent / "pg"
    url = start_with_binaries(data, cleanup="delete")
    assert start_with_binaries(data) == url, "a second start attaches to the running server"

    async def answer() -> int:
        connection = await asyncpg.connect(make_url(url).render_as_string(False))
        try:
            return int(await connection.fetchval("SELECT 40 + 2"))
        finally:
            await connection.close()

    assert asyncio.run(answer()) == 42
