"""Watching the event feed: list+watch with resume, for agents written in Python.

    from allocator.client.watch import Watch
    watch = Watch("http://127.0.0.1:8080")
    for event in watch:                   # never ends on its own; reconnects as needed
        state = watch.state               # ranges and allocations (by ip) at state.revision

``Watch`` (blocking) and ``AsyncWatch`` (asyncio) yield every Event of the feed in revision
order and keep ``state``, the ranges and allocations the events describe:

- the first connection lists (``initial=true``): one RANGE_ADDED per range and one ALLOCATED per
  allocation at one revision S, then a BOOKMARK with ``initial_end``. The list is gathered aside
  and becomes ``state`` at once at that bookmark, so ``state`` is never half a list;
- after that, each live event changes ``state`` by exactly one entry (a RANGE_UPDATED replaces
  the range it names);
- a lost connection, a server restart, the end of a stream or an ERROR event: it reconnects with
  exponential backoff and jitter and resumes after the last revision seen (bookmarks advance it);
- a 410 (the revisions it needs were compacted, or lost in a failover of the database): it lists
  again, and the next ``initial_end`` bookmark replaces ``state`` (so entries that vanished
  meanwhile go too); with ``relist=False`` it raises ProblemError instead. It resumes with the ``epoch`` of the last bookmark, so a server whose
  database lost revisions this watch received refuses the resume instead of serving other
  events under the same numbers.

A consumer that keeps its own copy refreshes it from ``state`` whenever it sees a BOOKMARK with
``initial_end``, and otherwise applies the events one by one. Refusals that retrying cannot cure
(a 4xx other than 410/429, such as a 401) raise ProblemError. ``on_retry`` is called with the
reason of each reconnection that follows a failure (a connection refused, a 503, ...).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, NotRequired, TypedDict, TypeVar

import httpx
import orjson

from allocator.client.calls import Call
from allocator.client.connection import Verify, http_options
from allocator.client.errors import ProblemError
from allocator.client.models import Allocation, Range

WATCH_PATH = "/v1/watch"
READ_TIMEOUT = 30.0
"""The server sends a bookmark at least every 10 s: 30 s of silence means a dead connection."""


class Event(TypedDict):
    type: str
    revision: int
    allocation: NotRequired[Allocation]
    range: NotRequired[Range]
    problem: NotRequired[dict[str, Any]]
    initial_end: NotRequired[bool]
    epoch: NotRequired[str]


class EventPage(TypedDict):
    items: list[Event]
    revision: int
    epoch: str


def events_call(since: int = 0, limit: int | None = None, epoch: str | None = None) -> Call:
    """The poll form: ``{"items": [Event...], "revision": HEAD, "epoch": E}``; pass the epoch of
    the previous page to be refused (410) rather than served another history after a failover."""
    params: dict[str, Any] = {"since": since}
    if limit is not None:
        params["limit"] = limit
    if epoch is not None:
        params["epoch"] = epoch
    return Call("GET", "/v1/events", params=params)


@dataclass(frozen=True, slots=True)
class FeedState:
    """The ranges (by name) and allocations (by ip) as of ``revision``.

    The mappings are read-only views that the next event updates in place (one entry per
    event); ``Cursor.snapshot()`` / ``Watch.snapshot()`` return copies that stay as they are.
    """

    revision: int
    ranges: Mapping[str, Range]
    allocations: Mapping[str, Allocation]


@dataclass
class Backoff:
    """Exponential backoff with full jitter: a delay drawn in [0, min(cap, first * 2^n))."""

    first: float = 0.1
    cap: float = 10.0
    attempts: int = 0

    def next_delay(self) -> float:
        delay = random.uniform(0, min(self.cap, self.first * 2**self.attempts))
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0


class Reconnect(Exception):
    """The stream ended abnormally: connect again (after a backoff); ``relisting`` when the next
    connection lists everything again, since the server cannot resume."""

    def __init__(self, reason: str, *, relisting: bool = False) -> None:
        super().__init__(reason)
        self.relisting = relisting


@dataclass
class Cursor:
    """The watch's position and state, with no I/O: which request to send next, and what each
    response or event changes. ``revision`` None means the next request lists (initial=true),
    or, with ``initial`` false, starts at the server's head (live events only)."""

    revision: int | None = None
    initial: bool = True
    relist: bool = True
    """Whether to list again when the server cannot resume (a 410); else raise ProblemError."""
    epoch: str | None = None
    """The epoch of the last bookmark: the history ``revision`` belongs to."""
    head_seen: int = 0
    """The newest revision the server has mentioned (events and bookmarks)."""
    _ranges: dict[str, Range] = field(default_factory=dict)
    _allocations: dict[str, Allocation] = field(default_factory=dict)
    _listing: tuple[dict[str, Range], dict[str, Allocation]] | None = None
    _state: FeedState = field(
        default_factory=lambda: FeedState(0, MappingProxyType({}), MappingProxyType({}))
    )

    @property
    def state(self) -> FeedState:
        return self._state

    def snapshot(self) -> FeedState:
        """Return a copy of the state that later events leave alone."""
        state = self._state
        return FeedState(
            state.revision,
            MappingProxyType(dict(state.ranges)),
            MappingProxyType(dict(state.allocations)),
        )

    def params(self) -> dict[str, str]:
        """The query of the next watch request."""
        if self.revision is None:
            return {"initial": "true"} if self.initial else {}
        if self.epoch is None:
            return {"since": str(self.revision)}
        return {"since": str(self.revision), "epoch": self.epoch}

    def connected(self) -> None:
        """A stream was opened with ``params()``."""
        self._listing = ({}, {}) if self.revision is None and self.initial else None

    def check(self, status: int, body: bytes) -> None:
        """Judge the status of a watch response: return for 200, list again after a 410, raise
        Reconnect for what a retry may cure, ProblemError for what it cannot."""
        if status == 200:
            return
        if status in (408, 429) or status >= 500:
            raise Reconnect(f"HTTP {status}")
        try:
            problem = orjson.loads(body)
        except orjson.JSONDecodeError:
            problem = {"detail": body[:500].decode(errors="replace")}
        refused = ProblemError(status, problem if isinstance(problem, dict) else {})
        if status == 410 and self.relist:
            self._list_again()
            raise Reconnect(f"{refused}; listing everything again", relisting=True)
        raise refused

    def apply(self, event: Event) -> None:
        """Take one event into the state. Raises Reconnect for an ERROR event."""
        kind, revision = event["type"], event["revision"]
        self.head_seen = max(self.head_seen, revision)
        if kind == "ERROR":
            problem = event.get("problem", {})
            if problem.get("type") == "revision-unknown":  # the history changed under the watch
                if not self.relist:
                    raise ProblemError(410, problem)
                self._list_again()
                raise Reconnect(
                    f"{problem.get('detail')}; listing everything again", relisting=True
                )
            raise Reconnect(f"ERROR event: {problem}")
        if kind == "BOOKMARK" and "epoch" in event:
            self.epoch = event["epoch"]
        if self._listing is not None:
            ranges, allocations = self._listing
            if kind == "RANGE_ADDED":
                ranges[event["range"]["name"]] = event["range"]
            elif kind == "ALLOCATED":
                allocations[event["allocation"]["ip"]] = event["allocation"]
            elif kind == "BOOKMARK" and event.get("initial_end"):
                self._ranges, self._allocations = ranges, allocations
                self._listing = None
                self._publish(revision)
            return
        if kind == "ALLOCATED":
            self._allocations[event["allocation"]["ip"]] = event["allocation"]
        elif kind == "RELEASED":
            self._allocations.pop(event["allocation"]["ip"], None)
        elif kind in ("RANGE_ADDED", "RANGE_UPDATED"):
            # An update replaces the range whole: a resize changes its CIDR and bands.
            self._ranges[event["range"]["name"]] = event["range"]
        elif kind == "RANGE_REMOVED":
            self._ranges.pop(event["range"]["name"], None)
        self._publish(max(revision, self.revision or 0))

    def _list_again(self) -> None:
        self.revision, self.initial, self.epoch = None, True, None

    def _publish(self, revision: int) -> None:
        self.revision = revision
        self._state = FeedState(
            revision, MappingProxyType(self._ranges), MappingProxyType(self._allocations)
        )


def _decode(line: str) -> Event | None:
    if not line.strip():
        return None
    event: Event = orjson.loads(line)
    return event


HttpClient = TypeVar("HttpClient", httpx.Client, httpx.AsyncClient)


class _Follower(Generic[HttpClient]):
    """What the blocking and the asyncio watch share: the connection, the cursor, the backoff.

    ``server``: a base URL (the watch opens and closes its own connection, with ``token`` and
    ``verify``, by default from ``ALLOCATOR_TOKEN`` and ``ALLOCATOR_CA_FILE``) or an httpx client.
    ``since``: resume after that revision instead of listing; ``initial=False`` (without
    ``since``): start with the live events at the server's head; ``cursor``: carry on from
    another watch's position and state (for instance on another replica); ``relist`` and
    ``on_retry``: see the module.
    """

    _client_class: type[HttpClient]

    def __init__(
        self,
        server: str | HttpClient,
        *,
        since: int | None = None,
        initial: bool = True,
        relist: bool = True,
        cursor: Cursor | None = None,
        backoff: Backoff | None = None,
        on_retry: Callable[[Exception], None] | None = None,
        read_timeout: float = READ_TIMEOUT,
        token: str | None = None,
        verify: Verify = None,
    ) -> None:
        self._owns_http = isinstance(server, str)
        self._http: HttpClient = (
            self._client_class(base_url=server, **http_options(token, verify))
            if isinstance(server, str)
            else server
        )
        self.cursor = cursor or Cursor(revision=since, initial=initial, relist=relist)
        self._backoff = backoff or Backoff()
        self._on_retry = on_retry
        self._timeout = httpx.Timeout(10.0, read=read_timeout)
        self._lock = threading.Lock()

    @property
    def state(self) -> FeedState:
        """The state (live views; from another thread, prefer ``snapshot()``)."""
        return self.cursor.state

    def snapshot(self) -> FeedState:
        """A copy of the state, safe to read from any thread while the watch goes on."""
        with self._lock:
            return self.cursor.snapshot()

    def _retrying(self, reason: Exception) -> None:
        if self._on_retry is not None:
            self._on_retry(reason)


class Watch(_Follower[httpx.Client]):
    """Blocking list+watch; iterate it for events, read ``state`` (see the module)."""

    _client_class = httpx.Client

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __iter__(self) -> Iterator[Event]:
        while True:
            try:
                params = self.cursor.params()
                with self._http.stream(
                    "GET", WATCH_PATH, params=params, timeout=self._timeout
                ) as response:
                    body = response.read() if response.status_code != 200 else b""
                    self.cursor.check(response.status_code, body)
                    self.cursor.connected()
                    for line in response.iter_lines():
                        event = _decode(line)
                        if event is not None:
                            with self._lock:
                                self.cursor.apply(event)
                            self._backoff.reset()
                            yield event
            except (Reconnect, httpx.TransportError) as reason:
                self._retrying(reason)
            time.sleep(self._backoff.next_delay())


class AsyncWatch(_Follower[httpx.AsyncClient]):
    """asyncio list+watch; ``async for`` it for events, read ``state`` (see the module)."""

    _client_class = httpx.AsyncClient

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            try:
                params = self.cursor.params()
                async with self._http.stream(
                    "GET", WATCH_PATH, params=params, timeout=self._timeout
                ) as response:
                    body = await response.aread() if response.status_code != 200 else b""
                    self.cursor.check(response.status_code, body)
                    self.cursor.connected()
                    async for line in response.aiter_lines():
                        event = _decode(line)
                        if event is not None:
                            self.cursor.apply(event)
                            self._backoff.reset()
                            yield event
            except (Reconnect, httpx.TransportError) as reason:
                self._retrying(reason)
            await asyncio.sleep(self._backoff.next_delay())
