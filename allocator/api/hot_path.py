"""The hot path: allocations and releases answered without FastAPI's routing and parameters.

A control plane's traffic is mostly ``POST /v1/allocations`` and ``DELETE /v1/allocations/{ip}``.
For these FastAPI spends more CPU finding the route among all routes and resolving its
dependency and parameters than the write itself costs. This middleware answers a well-formed one
at once: it authenticates it as the route's dependency does (``auth.admit``), validates it with
the route's own model and constraints, and calls the route's own function.

Anything else goes to the app untouched: another route, a query parameter or a body the route
would refuse, a token it would refuse, a body sent without a Content-Length (the limit on
bodies then counts it as it arrives). The app therefore stays the one place that defines the
contract and words its refusals; the refusals the write itself returns (an address taken, a
range full) are sent as the app's exception handler sends them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allocator.api.auth import admit
from allocator.api.deps import require_json
from allocator.api.limits import content_length
from allocator.api.problems import error_response
from allocator.api.routes import allocations
from allocator.api.schemas import AllocationCreate
from allocator.domain.errors import AllocatorError
from allocator.domain.token import Permission

PATH = "/v1/allocations"
ONE = PATH + "/"

_owner = TypeAdapter(allocations.Owner)


class HotPath:
    """Answers well-formed allocations and releases; passes everything else to ``app``."""

    def __init__(self, app: ASGIApp, retry_after_seconds: int) -> None:
        self.app = app
        self.retry_after_seconds = retry_after_seconds
        self._allocate = _route_of(allocations.allocate)
        self._release = _route_of(allocations.release)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if method == "POST" and path == PATH and not scope["query_string"]:
                await self._allocate_or_pass(scope, receive, send)
                return
            if method == "DELETE" and path.startswith(ONE) and "/" not in path[len(ONE) :]:
                await self._release_or_pass(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _allocate_or_pass(self, scope: Scope, receive: Receive, send: Send) -> None:
        if content_length(scope) is None:
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before it sent the body: no one to answer
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        http = Request(scope, receive)
        try:
            require_json(http)
            wanted = AllocationCreate.model_validate_json(body)
            await admit(http, Permission.ALLOCATE)
        except (AllocatorError, ValidationError):
            await self.app(scope, _replay(body, receive), send)
            return
        await self._answer(
            scope, receive, send, self._allocate, lambda: allocations.allocate(wanted, http)
        )

    async def _release_or_pass(self, scope: Scope, receive: Receive, send: Send) -> None:
        http = Request(scope, receive)
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        try:
            if query and (len(query) > 1 or query[0][0] != "owner"):
                raise ValueError("a query parameter the route does not take")
            owner: str | None = _owner.validate_python(query[0][1]) if query else None
            await admit(http, Permission.ALLOCATE)
        except (AllocatorError, ValueError):  # pydantic's ValidationError is a ValueError
            await self.app(scope, receive, send)
            return
        ip = scope["path"][len(ONE) :]
        await self._answer(
            scope, receive, send, self._release, lambda: allocations.release(ip, http, owner)
        )

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: BaseRoute,
        call: Callable[[], Any],
    ) -> None:
        scope["route"] = route  # the request's log line and metrics name the route's template
        try:
            response: Response = await call()
        except AllocatorError as error:
            response = error_response(error, self.retry_after_seconds)
        await response(scope, receive, send)


def _route_of(endpoint: Callable[..., Any]) -> BaseRoute:
    for route in allocations.router.routes:
        if getattr(route, "endpoint", None) is endpoint:
            return route
    raise LookupError(f"no route serves {endpoint.__name__}")


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app after the body was read here: the body, then what comes next."""
    replayed = False

    async def again() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again
