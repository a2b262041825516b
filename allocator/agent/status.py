"""How far behind the feed the agent is, for its log and its optional status endpoint."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass
class Lag:
    """``head_seen``: the newest revision the server mentioned; ``applied``: the revision the
    dataplane is programmed at. The lag in seconds is how long the oldest change the dataplane
    does not show yet has been known (0 when in step)."""

    head_seen: int = 0
    applied: int = -1
    behind_since: float | None = None
    ranges: int = 0
    allocations: int = 0

    def seen(self, revision: int) -> None:
        if revision > self.head_seen:
            self.head_seen = revision
        if self.head_seen > self.applied and self.behind_since is None:
            self.behind_since = time.monotonic()

    def programmed(self, revision: int, ranges: int, allocations: int) -> None:
        self.applied, self.ranges, self.allocations = revision, ranges, allocations
        self.behind_since = None if revision >= self.head_seen else time.monotonic()

    def advanced(self, revision: int) -> None:
        """Nothing to program up to ``revision``: the dataplane is at it."""
        self.programmed(max(self.applied, revision), self.ranges, self.allocations)

    @property
    def revisions(self) -> int:
        return max(self.head_seen - self.applied, 0) if self.applied >= 0 else self.head_seen

    @property
    def seconds(self) -> float:
        return 0.0 if self.behind_since is None else time.monotonic() - self.behind_since

    def document(self) -> dict[str, Any]:
        return {
            "applied_revision": self.applied,
            "head_revision": self.head_seen,
            "lag_revisions": self.revisions,
            "lag_seconds": round(self.seconds, 3),
            "in_step": self.applied >= 0 and self.revisions == 0,
            "ranges": self.ranges,
            "allocations": self.allocations,
        }

    def line(self) -> str:
        return (
            f"dataplane at revision {self.applied}, feed at {self.head_seen}: "
            f"lag {self.revisions} revisions, {self.seconds:.3f} s "
            f"({self.ranges} ranges, {self.allocations} allocations)"
        )


async def serve_status(lag: Lag, host: str, port: int) -> asyncio.Server:
    """Serve ``GET`` (any path) with the lag as JSON."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                await reader.readuntil(b"\r\n\r\n")
            body = orjson.dumps(lag.document())
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)
