"""The reference agent end to end, in a network namespace of its own.

The namespace holds the node: loopback, an interface carrying an endpoint address with a tiny
HTTP server on it, and a route for the range (out of that interface, where nothing answers: only
the agent's rules make an address of the range reachable, or refuse it at once). The allocator
runs in the test's namespace on loopback; the agent runs there too, but every ``nft`` it runs
enters the node's namespace (a wrapper first on its PATH), so the machine's own ruleset is never
touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.server import running_server

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"),
    reason="needs root, iproute2 (ip netns) and nftables (nft)",
)

ENDPOINT = "10.200.0.2"
RANGE = "10.96.0.0/24"
VIP = "10.96.0.10"
UNALLOCATED = "10.96.0.50"

PROBE = """
import socket, sys
ip, port = sys.argv[1], int(sys.argv[2])
try:
    s = socket.create_connection((ip, port), timeout=3)
except ConnectionRefusedError:
    print("REFUSED")
except OSError as exc:
    print("FAILED", type(exc).__name__)
else:
    s.sendall(b"GET /who HTTP/1.0\\r\\n\\r\\n")
    reply = b""
    while chunk := s.recv(4096):
        reply += chunk
    print("ANSWERED", reply.split(b"\\r\\n\\r\\n", 1)[-1].decode())
"""


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def namespace(tmp_path: Path) -> Iterator[str]:
    name = f"alloc-e2e-{uuid.uuid4().hex[:8]}"
    run("ip", "netns", "add", name)
    try:
        inside = ("ip", "netns", "exec", name)
        run(*inside, "ip", "link", "set", "lo", "up")
        # A veth pair wholly inside the namespace (dummy interfaces need a module not every
        # kernel has): node0 carries the endpoint, and the range is routed out of it to nobody.
        run(*inside, "ip", "link", "add", "node0", "type", "veth", "peer", "name", "node1")
        run(*inside, "ip", "link", "set", "node0", "up")
        run(*inside, "ip", "link", "set", "node1", "up")
        run(*inside, "ip", "addr", "add", f"{ENDPOINT}/24", "dev", "node0")
        run(*inside, "ip", "route", "add", RANGE, "dev", "node0")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def probe(namespace: str, ip: str, port: int) -> str:
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", PROBE, ip, str(port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout.strip() or result.stderr.strip()


def wait_for(namespace: str, ip: str, port: int, expected: str, within: float = 20) -> str:
    deadline = time.monotonic() + within
    while True:
        seen = probe(namespace, ip, port)
        if seen.startswith(expected) or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def nft_wrapper(directory: Path, namespace: str) -> Path:
    """A directory whose ``nft`` runs the real one inside ``namespace``."""
    wrapper = directory / "nft"
    real = shutil.which("nft")
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {real} "$@"\n')
    wrapper.chmod(0o755)
    return directory


def start_agent(base: str, bin_dir: Path) -> subprocess.Popen[str]:
    """The agent, following ``base``, its ``nft`` the one in ``bin_dir``."""
    return subprocess.Popen(
        [sys.executable, "-m", "allocator", "agent", "--server", base,
         "--debounce-ms", "20", "--report-seconds", "1"],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def test_agent_programs_dnat_and_fast_rejects_in_the_namespace(
    engine: AsyncEngine, database_url: str, namespace: str, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "who").write_text("the endpoint")
    web = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", "http.server", "8080",
         "--bind", ENDPOINT, "--directory", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    (tmp_path / "bin").mkdir()
    bin_dir = nft_wrapper(tmp_path / "bin", namespace)
    agent = None
    try:
        with running_server(database_url) as base, httpx.Client(base_url=base) as http:
            assert http.post("/v1/ranges", json={"name": "r", "cidr": RANGE}).status_code == 201
            endpoints = [{"ip": ENDPOINT, "port": 80, "target_port": 8080}]
            created = http.post(
                "/v1/allocations",
                json={"owner": "default/web", "ip": VIP, "metadata": {"endpoints": endpoints}},
            )
            assert created.status_code == 201, created.text
            assert wait_for(namespace, ENDPOINT, 8080, "ANSWERED") == "ANSWERED the endpoint"
            agent = start_agent(base, bin_dir)

            assert wait_for(namespace, VIP, 80, "ANSWERED") == "ANSWERED the endpoint"
            started = time.monotonic()
            assert probe(namespace, UNALLOCATED, 80) == "REFUSED"
            assert time.monotonic() - started < 3, "refused at once, not timed out"

            assert http.delete(f"/v1/allocations/{VIP}").status_code == 204
            assert wait_for(namespace, VIP, 80, "REFUSED") == "REFUSED"

            listed = run("ip", "netns", "exec", namespace, "nft", "list", "table", "inet",
                         "clusterip_allocator").stdout  # fmt: skip
            assert "ranges_v4" in listed and VIP not in listed
            untouched = subprocess.run(
                ["nft", "list", "table", "inet", "clusterip_allocator"], capture_output=True
            )
            assert untouched.returncode != 0, "the machine's own ruleset is left alone"
    finally:
        web.terminate()
        web.wait(10)
        log = ""
        if agent is not None:
            agent.terminate()
            _, log = agent.communicate(timeout=10)
    assert "lag 0 revisions" in log, log


GROWN = "10.96.0.0/23"
SHRUNK = "10.96.0.0/25"
NEW_PART = "10.96.1.50"
CUT_OFF = "10.96.0.200"


def test_agent_follows_a_grow_and_a_shrink_of_the_range(
    engine: AsyncEngine, database_url: str, namespace: str, tmp_path: Path
) -> None:
    # Everything the range may come to cover is routed out of node0, where nothing answers: an
    # address is refused at once only while a range's reject rule covers it.
    run("ip", "netns", "exec", namespace, "ip", "route", "add", "10.96.0.0/22", "dev", "node0")
    (tmp_path / "bin").mkdir()
    bin_dir = nft_wrapper(tmp_path / "bin", namespace)
    agent = None
    try:
        with running_server(database_url) as base, httpx.Client(base_url=base) as http:
            assert http.post("/v1/ranges", json={"name": "r", "cidr": RANGE}).status_code == 201
            agent = start_agent(base, bin_dir)
            assert wait_for(namespace, UNALLOCATED, 80, "REFUSED") == "REFUSED"
            assert probe(namespace, NEW_PART, 80).startswith("FAILED"), "no range covers it yet"

            grown = http.patch("/v1/ranges/r", json={"cidr": GROWN})
            assert grown.status_code == 200, grown.text
            assert wait_for(namespace, NEW_PART, 80, "REFUSED") == "REFUSED"
            started = time.monotonic()
            assert probe(namespace, NEW_PART, 80) == "REFUSED"
            assert time.monotonic() - started < 3, "refused at once, not timed out"

            shrunk = http.patch("/v1/ranges/r", json={"cidr": SHRUNK})
            assert shrunk.status_code == 200, shrunk.text
            listed = ""
            deadline = time.monotonic() + 20
            while GROWN in listed or SHRUNK not in listed:
                assert time.monotonic() < deadline, listed
                time.sleep(0.2)
                listed = run("ip", "netns", "exec", namespace, "nft", "list", "set", "inet",
                             "clusterip_allocator", "ranges_v4").stdout  # fmt: skip
            assert probe(namespace, CUT_OFF, 80).startswith("FAILED"), "no longer rejected"
            assert probe(namespace, "10.96.0.100", 80) == "REFUSED", "still in the range"
    finally:
        log = ""
        if agent is not None:
            agent.terminate()
            _, log = agent.communicate(timeout=10)
    assert "lag 0 revisions" in log, log
