"""Limits on what one client can make the server hold: request bodies and open watches.

- ``BodyLimit``: a pure ASGI middleware. A body whose ``Content-Length`` is over the limit is
  refused before a byte of it is read; a body sent without one (chunked) is counted as it arrives
  and refused as soon as it passes the limit. Either way the server never holds more than the
  limit, and the refusal is a 413 ``request-too-large`` problem document.
- ``WatchLimiter``: how many watch streams each token may hold open at once (429
  ``too-many-watchers`` beyond it), so one client cannot take every connection slot.

Limits on the content of valid JSON (owner length, metadata size and depth, list limits) are part
of the request schemas.
"""

from __future__ import annotations

import threading
from collections import Counter
from types import TracebackType
from typing import Annotated, Self

from fastapi import Depends, Request
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allocator.api.problems import document_of, problem_response
from allocator.domain.errors import RequestTooLarge, TooManyWatchers
from allocator.domain.token import Principal

BATCH_PATH = "/v1/allocations:batch"


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (``larger[path]`` on those paths) with 413,
    without reading them into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.max_bytes)
        declared = content_length(scope)
        if declared is not None and declared > limit:
            await problem_response(document_of(self.refusal(limit)))(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI lets only an HTTPException out of reading the body; the exception
                    # handler answers one raised from a domain error with that error's document.
                    refusal = self.refusal(limit)
                    raise HTTPException(413, refusal.detail) from refusal
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    def refusal(limit: int) -> RequestTooLarge:
        return RequestTooLarge(f"request bodies are limited to {limit} bytes", limit=limit)


def content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class WatchLimiter:
    """Counts the open watch streams of each token; ``lease`` takes a slot or raises.

    Thread-safe, though the server uses it from one event loop: acquiring and releasing are plain
    counter updates, so a watch route can take its slot before the stream starts (the 429 is then
    a normal problem response) and give it back when the stream ends, however it ends.
    """

    def __init__(self, per_token: int) -> None:
        self.per_token = per_token
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def lease(self, principal: Principal) -> WatchLease:
        """Return a held slot for ``principal``; raise TooManyWatchers when it holds them all."""
        with self._lock:
            if self._open[principal.name] >= self.per_token:
                raise TooManyWatchers(
                    f"token {principal.name!r} already holds {self.per_token} open watches",
                    limit=self.per_token,
                )
            self._open[principal.name] += 1
        return WatchLease(self, principal.name)

    def open_count(self, name: str) -> int:
        with self._lock:
            return self._open[name]

    def _release(self, name: str) -> None:
        with self._lock:
            self._open[name] -= 1
            if self._open[name] <= 0:
                del self._open[name]


class WatchLease:
    """One open watch. ``release()`` (or leaving ``with lease:``) gives the slot back; twice is
    harmless, so both the stream's end and a failure before it started may call it."""

    def __init__(self, limiter: WatchLimiter, name: str) -> None:
        self._limiter = limiter
        self._name = name
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._limiter._release(self._name)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


async def watch_lease(request: Request) -> WatchLease:
    """The dependency of a watch route: a slot for the request's principal (set by the auth
    dependency, which must run first), or 429. The route must release it when its stream ends.
    Async, though it never waits: a plain function would run in a worker thread, a thread hop
    per watch (which counts when thousands reconnect at once)."""
    limiter: WatchLimiter = request.app.state.watch_limiter
    principal: Principal = request.state.principal
    return limiter.lease(principal)


WatchLeaseDep = Annotated[WatchLease, Depends(watch_lease)]
