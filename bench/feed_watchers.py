"""Many watchers of one server's feed, in a process of their own (so that their reading is not
counted as the server's, nor slows the process that writes and times the commits).

    python -m bench.feed_watchers URL    (the plan as one JSON line on stdin)

The plan: ``{"queries": ["since=5", "initial=true", ...], "last": R}``: one NDJSON watch stream
per query, each read until the event of revision ``last`` arrived (or an ERROR). Each stream is
read by an asyncio protocol on a bare socket (no task or HTTP client per watcher: a few
microseconds per chunk), so one process keeps up with thousands of them. The process prints one
JSON line when every stream is live (its first BOOKMARK after the catch-up, or after the list's
``initial_end``), then waits for a line ``{"committed": {revision: monotonic time}, "wait": seconds}`` on stdin
and prints the figures: the delays from commit to arrival (one monotonic clock for every process
of the machine), when each stream went live, and each stream's gaps, errors and list sizes.

Every chunk the server writes holds whole NDJSON lines, so the lines that start with ``{`` are
the events, whatever the chunked framing around them. Events are scanned for their type and
revision, not parsed, and the lines of a list (``initial=true``) only counted: thousands of
streams catching up on thousands of events would take this process longer to parse than the
server to send. A read of plain events (no BOOKMARK or ERROR in it: a catch-up page, say) is not
even scanned line by line: its events are counted (``}\n`` ends each) and only its first and last
revisions read; it is gapless when those follow the stream's position and span the count (a
missing event and a repeated one in the same read would cancel out: the tests check every event,
this process checks what a scan per line would cost it more CPU than the server spends). Any
other read is scanned line by line.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

INITIAL_END = b'"initial_end":true'
ALLOCATED = b'"type":"ALLOCATED"'
EVENT = re.compile(rb'^\{"type":"([A-Z_]+)","revision":(\d+)', re.MULTILINE)
LINE_END = b"}\n"
"""The end of every event line (a JSON text holds no raw newline; the chunked framing no ``}``)."""
MARKS = (b'"type":"BOOKMARK"', b'"type":"ERROR"')
"""The type and revision of each event line (they come first in every Event object the server
writes): one scan per chunk, not a parse per line."""


class Stream(asyncio.Protocol):
    def __init__(
        self,
        request: bytes,
        last: int,
        listing: bool,
        done: asyncio.Future[None],
        on_live: Callable[[], None],
    ):
        self.request = request
        self.on_live = on_live
        self.last = last
        self.listing = listing
        """Still in the list of ``initial=true`` (before its ``initial_end``)."""
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.tail = b""
        self.headers = True
        self.status = 0
        self.live_at: float | None = None
        self.position: int | None = None
        self.arrivals: list[tuple[int, int, float]] = []
        """The revisions from first to last (inclusive) that arrived at a time."""
        self.listed = 0
        self.gaps = 0
        self.errors: list[Any] = []
        self.bytes = 0
        self.writes = 0
        """Reads that brought events: about the server's writes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.bytes += len(data)
        if self.listing and not self.headers and self.listed_in_place(data):
            return
        data = self.tail + data
        if self.headers:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.tail = data
                return
            self.status = int(data[9:12])
            self.headers = False
            data = data[end + 4 :]
        cut = data.rfind(b"\n") + 1
        self.tail, data = data[cut:], data[:cut]
        if self.listing:
            end = data.find(INITIAL_END)
            if end < 0:
                self.listed += data.count(ALLOCATED)
                return
            end = data.find(b"\n", end) + 1
            self.listed += data.count(ALLOCATED, 0, end)
            start = data.rfind(b"\n", 0, end - 1) + 1
            self.position = orjson.loads(data[start:end])["revision"]
            self.listing = False
            data = data[end:]
        if data and self.plain(data, now):
            return
        found = EVENT.findall(data)
        if found:
            self.writes += 1
        for kind, revision in found:
            self.event(kind, int(revision), now, data)

    def listed_in_place(self, data: bytes) -> bool:
        """Count the list's lines in a read without copying it (reads are 256 kB, the tail a
        line at most); return False, leaving it to be taken as any other, when the list ends in
        it."""
        first = data.find(b"\n") + 1
        if not first:
            return False
        cut = data.rfind(b"\n") + 1
        piece = self.tail + data[:first]  # the line the tail began, completed
        if INITIAL_END in piece or data.find(INITIAL_END, first, cut) >= 0:
            return False
        self.listed += piece.count(ALLOCATED) + data.count(ALLOCATED, first, cut)
        self.tail = data[cut:]
        return True

    def plain(self, data: bytes, now: float) -> bool:
        """Take a read of plain events in order after the position by its count and its first
        and last revisions; return False (scan it line by line) for any other."""
        if self.position is None or any(mark in data for mark in MARKS):
            return False
        count = data.count(LINE_END)
        first = EVENT.search(data)
        at = data.rfind(b"\n{")
        last = EVENT.match(data, at + 1) if at >= 0 else first
        if not count or first is None or last is None:
            return False
        low, high = int(first[2]), int(last[2])
        if low != self.position + 1 or high - low + 1 != count:
            return False
        self.writes += 1
        self.position = high
        self.arrivals.append((low, high, now))
        if high >= self.last:
            self.finish()
        return True

    def event(self, kind: bytes, revision: int, now: float, data: bytes) -> None:
        if kind == b"BOOKMARK":
            if self.live_at is None:
                self.live_at = now
                self.on_live()
            if self.position is None:
                self.position = revision
            return
        if kind == b"ERROR":
            start = data.find(b'{"type":"ERROR"')
            self.errors.append(orjson.loads(data[start : data.find(b"\n", start)])["problem"])
            self.finish()
            return
        if self.position is not None and revision != self.position + 1:
            self.gaps += 1
        self.position = revision
        self.arrivals.append((revision, revision, now))
        if revision >= self.last:
            self.finish()

    def finish(self) -> None:
        self.end()
        if self.transport is not None:
            self.transport.close()

    def end(self) -> None:
        if not self.done.done():
            if self.live_at is None:
                self.on_live()  # no longer waited for
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.errors.append(f"connection lost: {exc!r}")
            self.end()


def percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))], 3)


async def _line() -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    text = await loop.run_in_executor(None, sys.stdin.readline)
    parsed: dict[str, Any] = orjson.loads(text)
    return parsed


def _say(what: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(what).decode() + "\n")
    sys.stdout.flush()


async def main(url: str) -> None:
    plan = await _line()
    address = urlsplit(url)
    loop = asyncio.get_running_loop()
    began = time.monotonic()
    streams: list[Stream] = []
    waiting = [len(plan["queries"])]
    all_live = asyncio.Event()

    def on_live() -> None:
        waiting[0] -= 1
        if not waiting[0]:
            all_live.set()

    for query in plan["queries"]:
        request = f"GET /v1/watch?{query} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        listing = "initial=true" in query
        stream = Stream(request, plan["last"], listing, loop.create_future(), on_live)
        if (since := re.search(r"since=(\d+)", query)) is not None:
            stream.position = int(since[1])
        streams.append(stream)
    connecting = [
        loop.create_connection(lambda s=s: s, address.hostname, address.port) for s in streams
    ]
    for batch in range(0, len(connecting), 200):  # the server's accept backlog
        await asyncio.gather(*connecting[batch : batch + 200])
    ended = asyncio.ensure_future(asyncio.wait([s.done for s in streams]))
    await asyncio.wait(
        [asyncio.ensure_future(all_live.wait()), ended], return_when="FIRST_COMPLETED"
    )
    _say({"live": True, "seconds": time.monotonic() - began})
    finish = await _line()
    committed = {int(k): v for k, v in finish["committed"].items()}
    if finish["wait"]:
        await asyncio.wait([s.done for s in streams], timeout=finish["wait"])
    delays = sorted(
        (at - committed[revision]) * 1000
        for s in streams
        for low, high, at in (s.arrivals if committed else ())
        for revision in range(low, high + 1)
        if revision in committed
    )
    live = sorted(s.live_at - began for s in streams if s.live_at is not None)
    _say(
        {
            "deliveries": len(delays),
            "delay_ms": {f"p{p}": percentile(delays, p / 100) for p in (50, 99, 100)},
            "live": len(live),
            "live_seconds": {f"p{p}": percentile(live, p / 100) for p in (50, 100)},
            "unfinished": sum(not s.done.done() for s in streams),
            "statuses": sorted({s.status for s in streams}),
            "gaps": sum(s.gaps for s in streams),
            "errors": [e for s in streams for e in s.errors][:5],
            "error_count": sum(len(s.errors) for s in streams),
            "listed": sorted({s.listed for s in streams}),
            "bytes": sum(s.bytes for s in streams),
            "writes": sum(s.writes for s in streams),
        }
    )
    for s in streams:
        if s.transport is not None:
            s.transport.close()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(sys.argv[1]))
