"""An ``allocator serve`` process for the run, and the CPU it uses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import psutil


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the server and its worker processes so far."""
        try:
            top = psutil.Process(self.process.pid)
            total = 0.0
            for one in [top, *top.children(recursive=True)]:
                times = one.cpu_times()
                total += times.user + times.system
            return total
        except psutil.NoSuchProcess:
            return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(database_url: str, workers: int = 1, **env: str) -> Iterator[Server]:
    """Start ``allocator serve`` on a free loopback port; yield it once ready; stop it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "allocator", "serve", "--port", str(port)]
    command += ["--log-level", "warning"]
    if workers > 1:
        command += ["--workers", str(workers)]
    with spawned(command, port, ALLOCATOR_DATABASE_URL=database_url, **env) as server:
        yield server


@contextmanager
def spawned(command: list[str], port: int, **env: str) -> Iterator[Server]:
    """Run ``command``, a server on ``port`` that answers ``GET /readyz``; yield it once ready."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"server exited: {log.read().decode(errors='replace')}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready in 60 s")
            time.sleep(0.1)
        yield Server(url, process)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
