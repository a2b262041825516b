"""``allocator watch``: the feed printed as it arrives."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.server import running_server


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
