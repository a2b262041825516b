"""``allocator serve`` and ``verify`` on the embedded Postgres, as a new user runs them: real
processes, stopped as process managers and terminals stop them (SIGTERM, SIGINT, SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.server import free_port


def postmasters(data_dir: Path) -> list[psutil.Process]:
    """The Postgres servers running on ``data_dir``."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and "-D" in cmdline and str(data_dir) in cmdline:
            found.append(process)
    return found


def environment(data_dir: Path) -> dict[str, str]:
    """A new user's environment: no database URL, no runtime directory (as under sudo or cron)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ALLOCATOR_DATABASE_URL", "XDG_RUNTIME_DIR")
    }
    return {**env, "ALLOCATOR_DATA_DIR": str(data_dir)}


@dataclass
class Serve:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, signum: int) -> int:
        """Send ``signum``; return the exit status (negative: ended by that signal)."""
        self.process.send_signal(signum)
        return self.process.wait(60)


def serve(data_dir: Path, log: Path) -> Serve:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "allocator", "serve", "--port", str(port)],
            env=environment(data_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Serve(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, f"serve exited: {running.output()}"
        try:
            if httpx.get(f"{running.url}/readyz", timeout=1).status_code == 200:
                return running
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"not ready in 90 s: {running.output()}"
        time.sleep(0.2)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="allocator-embedded-"))
    parent.chmod(0o755)  # as root Postgres runs as another user, who must reach its data
    data = parent / "postgres"
    try:
        yield data
    finally:
        for postmaster in postmasters(data):  # whatever a failed test left running
            postmaster.send_signal(signal.SIGINT)  # Postgres' fast shutdown
            psutil.wait_procs([postmaster], timeout=30)
        subprocess.run(["rm", "-rf", str(parent)], check=False)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_server_stops_its_postgres(data_dir: Path, tmp_path: Path, signum: int) -> None:
    running = serve(data_dir, tmp_path / "serve.log")
    assert postmasters(data_dir), "the embedded Postgres runs in the data directory"
    running.stop(signum)
    assert postmasters(data_dir) == [], running.output()
    output = running.output()
    assert "Traceback" not in output, output
    assert "RuntimeDirWarning" not in output and "color_message" not in output, output


def test_a_server_after_a_killed_one_reuses_its_postgres_and_stops_it(
    data_dir: Path, tmp_path: Path
) -> None:
    first = serve(data_dir, tmp_path / "first.log")
    created = httpx.post(f"{first.url}/v1/ranges", json={"name": "kept", "cidr": "10.9.0.0/24"})
    assert created.status_code == 201
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    left = postmasters(data_dir)
    assert left, "a killed server cannot stop its Postgres"
    second = serve(data_dir, tmp_path / "second.log")
    assert httpx.get(f"{second.url}/v1/ranges/kept").status_code == 200, "same data"
    assert [p.pid for p in postmasters(data_dir)] == [p.pid for p in left], "reused, not doubled"
    second.stop(signal.SIGTERM)
    assert postmasters(data_dir) == [], second.output()


def allocator(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "allocator", *args],
        env=environment(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_verify_before_the_first_serve_says_so_and_creates_nothing(data_dir: Path) -> None:
    verified = allocator(data_dir, "verify")
    assert verified.returncode == 3, verified.stderr
    assert verified.stderr.strip().splitlines() == [
        f"error: no allocator schema in the embedded Postgres in {data_dir}"
        " (nothing was ever created there): run `allocator db upgrade` first"
    ]
    assert not data_dir.exists(), "a read-only command creates no database"

    upgraded = allocator(data_dir, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "RuntimeDirWarning" not in upgraded.stderr, upgraded.stderr
    assert postmasters(data_dir) == [], "a command stops the Postgres it started"
    verified = allocator(data_dir, "verify")
    assert verified.returncode == 0, verified.stderr
    assert "consistent" in verified.stdout
    assert "RuntimeDirWarning" not in verified.stderr, verified.stderr
    assert postmasters(data_dir) == []
