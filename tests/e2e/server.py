"""Real server processes for end-to-end tests (started as the benchmarks start them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bench.server import free_port, running

__all__ = ["free_port", "running_server"]


@contextmanager
def running_server(database_url: str, **env: str) -> Iterator[str]:
    """Start ``allocator serve`` on a free loopback port; yield its base URL; stop it after."""
    with running(database_url, **env) as server:
        yield server.url
