"""A watch stream's body goes straight to the server's send once its start has gone through every
middleware (``allocator.api.feed_response``): what those wrappers watch for still reaches them."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncGenerator
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from allocator.api.feed_response import FeedResponse
from allocator.api.metrics import Metrics
from allocator.api.middleware import HEADER, RequestLog
from allocator.service.feed.frame import Batch, bookmark

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "method": "GET",
    "path": "/v1/watch",
    "headers": [],
}


async def frames(count: int) -> AsyncGenerator[list[Batch]]:
    for revision in range(1, count + 1):
        yield [Batch([bookmark(revision, "1-abc")])]


async def never() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_the_start_goes_through_the_middleware_and_the_body_straight_to_the_server() -> None:
    at_server: list[Message] = []
    in_middleware: list[str] = []

    async def server_send(message: Message) -> None:
        at_server.append(message)

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        async def watching(message: Message) -> None:  # as Starlette's error middleware
            in_middleware.append(message["type"])
            await send(message)

        await FeedResponse(frames(3), "ndjson", send_timeout=5)(scope, receive, watching)

    await RequestLog(route, Metrics())(dict(SCOPE), never, server_send)
    assert in_middleware == ["http.response.start"]
    start, *body = at_server
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert HEADER in dict(start["headers"]), "the request log's header is on the start"
    assert [m["body"].count(b"\n") for m in body] == [1, 1, 1, 0]
    assert body[-1]["more_body"] is False


async def test_without_the_request_log_the_body_goes_through_the_middleware_too() -> None:
    in_middleware: list[str] = []

    async def server_send(message: Message) -> None:
        in_middleware.append(message["type"])

    await FeedResponse(frames(2), "ndjson", send_timeout=5)(dict(SCOPE), never, server_send)
    assert in_middleware == ["http.response.start", *["http.response.body"] * 3]


async def test_a_finished_request_leaves_no_cycle_through_the_servers_send() -> None:
    """The server's send holds the scope (as uvicorn's does): once the request ends, the scope
    no longer holds the send, so both are freed by reference counting, not by the collector."""

    class Cycle:  # uvicorn's per-request object: its scope, and the send bound to it
        def __init__(self, scope: Scope) -> None:
            self.scope = scope

        async def send(self, message: Message) -> None:
            pass

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        await FeedResponse(frames(1), "ndjson", send_timeout=5)(scope, receive, send)

    cycle = Cycle(dict(SCOPE))
    freed = asyncio.Event()
    weakref.finalize(cycle, freed.set)
    gc.disable()
    try:
        await RequestLog(route, Metrics())(cycle.scope, never, cycle.send)
        del cycle
        assert freed.is_set()
    finally:
        gc.enable()
