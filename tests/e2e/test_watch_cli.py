"""``allocator watch``: the feed printed as it arrives."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.server import spawned
from tests.e2e.server import free_port, running_server


@contextmanager
def watching(*arguments: str, server: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "allocator", "watch", *arguments],
        env={**os.environ, "ALLOCATOR_URL": server},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.communicate(timeout=10)


def read_until(process: subprocess.Popen[str], text: str) -> list[str]:
    assert process.stdout is not None
    lines = []
    while text not in (line := process.stdout.readline()):
        assert line, f"the output ended before {text!r}: {lines}"
        lines.append(line.rstrip("\n"))
    return [*lines, line.rstrip("\n")]


def test_watch_prints_the_list_then_live_events_as_json_and_as_a_table(
    engine: AsyncEngine, database_url: str
) -> None:
    with running_server(database_url) as base, httpx.Client(base_url=base) as http:
        http.post("/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/24"})
        held = http.post("/v1/allocations", json={"owner": "default/web"}).json()
        with (
            watching("--initial", "-o", "json", server=base) as as_json,
            watching("--since", "1", server=base) as as_table,
        ):
            listed = [orjson.loads(line) for line in read_until(as_json, '"initial_end"')]
            assert [e["type"] for e in listed] == ["RANGE_ADDED", "ALLOCATED", "BOOKMARK"]
            rows = read_until(as_table, "default/web")
            assert rows[0].split() == ["REVISION", "TYPE", "IP", "/", "RANGE", "OWNER", "/", "CIDR"]
            assert rows[-1].split()[:4] == ["2", "ALLOCATED", held["ip"], "default/web"]
            http.delete(f"/v1/allocations/{held['ip']}")
            released = orjson.loads(read_until(as_json, '"RELEASED"')[-1])
            assert (released["revision"], released["allocation"]["ip"]) == (3, held["ip"])
            assert read_until(as_table, "RELEASED")[-1].split()[:3] == ["3", "RELEASED", held["ip"]]


def watch(*arguments: str, server: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "allocator", "watch", *arguments],
        env={**os.environ, "ALLOCATOR_URL": server},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_server_that_never_answers_is_exit_3_after_the_wait() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    watched = watch("--wait", "2", server=closed)
    assert watched.returncode == 3, watched.stderr
    assert time.monotonic() - started < 30
    assert watched.stdout == "", "no header without a server"
    lines = watched.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"cannot reach the allocator at {closed}")
    assert "retrying at most 10 s apart" in lines[0]
    assert lines[1] == f"error: no answer from the allocator at {closed} within 2 s"


def test_an_outage_is_said_once_and_its_end_too(engine: AsyncEngine, database_url: str) -> None:
    port = free_port()
    command = [sys.executable, "-m", "allocator", "serve", "--port", str(port)]
    env = {"ALLOCATOR_DATABASE_URL": database_url}
    process: subprocess.Popen[str] | None = None
    with tempfile.TemporaryFile("w+") as errors:
        try:
            with spawned(command, port, **env) as first:
                httpx.post(f"{first.url}/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/24"})
                process = subprocess.Popen(
                    [sys.executable, "-m", "allocator", "watch", "--since", "0"],
                    env={**os.environ, "ALLOCATOR_URL": first.url},
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    text=True,
                )
                read_until(process, "RANGE_ADDED")
            said = wait_for(errors, "cannot reach the allocator")
            time.sleep(4)  # several retries
            errors.seek(0)
            assert errors.read() == said, "once per outage"
            assert "retrying at most 10 s apart" in said
            with spawned(command, port, **env) as second:
                httpx.post(f"{second.url}/v1/allocations", json={"owner": "default/web"})
                assert read_until(process, "ALLOCATED")[-1].split()[:2] == ["2", "ALLOCATED"]
                assert "reconnected" in wait_for(errors, "reconnected")
        finally:
            if process is not None:
                process.terminate()
                process.communicate(timeout=10)


def wait_for(log: IO[str], text: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        log.seek(0)
        content = log.read()
        if text in content:
            return content
        assert time.monotonic() < deadline, f"never said {text!r}: {content!r}"
        time.sleep(0.1)


def test_since_beyond_the_head_is_refused_unless_relisting(
    engine: AsyncEngine, database_url: str
) -> None:
    with running_server(database_url) as base:
        httpx.post(f"{base}/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/24"})
        refused = watch("--since", "9999", server=base)
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines()[-1] == (
            "error: revision 9999 is beyond the head revision 1 (410 revision-unknown);"
            " --relist lists everything instead"
        )
        assert "RANGE_ADDED" not in refused.stdout, "no re-listing behind the user's back"
        with watching("--since", "9999", "--relist", server=base) as relisting:
            assert read_until(relisting, "RANGE_ADDED")[-1].split()[:3] == ["1", "RANGE_ADDED", "r"]
