"""The request middleware (pure ASGI, so streamed responses such as the watch feed pass through
untouched): a request id for every request, one log line when it ends, and the HTTP metrics."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allocator.api.logs import request_id
from allocator.api.metrics import Metrics

log = logging.getLogger("allocator.request")

HEADER = b"x-request-id"
MAX_ID_LENGTH = 128
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Probes and scrapes arrive every few seconds: their lines are logged at debug level."""
SERVER_SEND = "allocator.server_send"
"""The scope key of the server's own ``send``, for a watch stream's body (see
``feed_response``): every middleware between here and the route looks at a response's start
only, and passing each delivery through their wrappers was a tenth of the server's CPU with
thousands of watchers. The request log takes it out of the scope when the request ends: the
server's ``send`` holds the scope, so leaving it there made a reference cycle per request, freed
only by the cyclic collector, which a server process runs rarely (``allocator.api.collector``)."""


def incoming_id(scope: Scope) -> str | None:
    """Return the caller's X-Request-ID when it is short printable ASCII, else None."""
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            text: str = value.decode("latin-1")
            if 0 < len(text) <= MAX_ID_LENGTH and text.isascii() and text.isprintable():
                return text
    return None


def route_template(scope: Scope) -> str:
    """Return the path template of the matched route (``/v1/allocations/{ip}``), so metrics do
    not get a series per address; ``unmatched`` when no route matched."""
    return str(getattr(scope.get("route"), "path", None) or "unmatched")


class RequestLog:
    """Keeps or makes the request id (echoed as ``X-Request-ID``), logs one line per request with
    method, path, status, duration and, when authentication ran, the caller's token name and
    role (``request.state.principal``), and counts the request in the HTTP metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope[SERVER_SEND] = send
        rid = incoming_id(scope) or uuid.uuid4().hex
        token = request_id.set(rid)
        status = 500  # unless a response starts: an exception escaped every handler

        def send_with_id(message: Message) -> Awaitable[None]:
            # A plain function handing back the server's awaitable: no coroutine of its own for
            # each message (a watch stream sends one per delivery).
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, rid.encode())]
            return send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            scope.pop(SERVER_SEND, None)
            self._record(scope, status, seconds, rid)
            request_id.reset(token)

    def _record(self, scope: Scope, status: int, seconds: float, rid: str) -> None:
        method, path, route = scope["method"], scope["path"], route_template(scope)
        metrics = self.metrics
        metrics.child(metrics.http_requests, method, route, str(status)).inc()
        metrics.child(metrics.http_duration, method, route).observe(seconds)
        level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
        if not log.isEnabledFor(level):
            return
        extra: dict[str, Any] = {
            "request_id": rid,
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        }
        principal = scope.get("state", {}).get("principal")
        if principal is not None:
            extra["principal"] = getattr(principal, "name", None)
            extra["role"] = getattr(principal, "role", None)
        log.log(level, "%s %s %d", method, path, status, extra=extra)
