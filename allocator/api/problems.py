"""RFC 9457 problem documents: the one place where errors become HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from allocator.api.schemas import shape_refusal
from allocator.domain import errors

log = logging.getLogger(__name__)

STATUS: dict[type[errors.AllocatorError], int] = {
    errors.InvalidRequest: 422,
    errors.IPNotInRange: 422,
    errors.NoRangeForFamily: 422,
    errors.RangeNotFound: 404,
    errors.IPNotAllocated: 404,
    errors.RangeExists: 409,
    errors.RangeOverlaps: 409,
    errors.RangeNotEmpty: 409,
    errors.RangeFull: 409,
    errors.IPAlreadyAllocated: 409,
    errors.OwnerHasAllocation: 409,
    errors.OwnerMismatch: 409,
    errors.IPCoolingDown: 409,
    errors.RangeNotAllocatable: 409,
    errors.AllocationsOutsideRange: 409,
    errors.RevisionCompacted: 410,
    errors.RevisionUnknown: 410,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.RequestTooLarge: 413,
    errors.TooManyWatchers: 429,
    errors.Unavailable: 503,
}

MEDIA_TYPE = "application/problem+json"

HTTP_TYPES = {404: "not-found", 405: "method-not-allowed"}
"""The types of the framework's own refusals (a path or method that does not exist)."""
HTTP_ERROR = "http-error"
INTERNAL_ERROR = "internal-error"


def problem(status: int, type_: str, title: str, detail: str, **extensions: Any) -> dict[str, Any]:
    return {"type": type_, "title": title, "status": status, "detail": detail, **extensions}


REQUEST_PARTS = frozenset({"body", "query", "path", "header", "cookie"})


def field_name(location: tuple[int | str, ...]) -> str:
    """Return the plain name of a bad field (``limit``, ``metadata.a``, ``requests[3].owner``),
    or ``body`` for the body as a whole (for example JSON that does not parse)."""
    parts = [part for part in location if part not in REQUEST_PARTS]
    if location[:1] == ("body",) and (not parts or isinstance(parts[0], int)):
        return "body"
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else part
    return name or "body"


def message_of(error: Mapping[str, Any]) -> str:
    """Return what a validation error says: for a value of the wrong shape, what it is not."""
    if error["type"] == "string_pattern_mismatch" and isinstance(error.get("input"), str):
        refusal = shape_refusal(error["ctx"]["pattern"], error["input"])
        if refusal is not None:
            return refusal
    return str(error["msg"])


def document_of(error: errors.AllocatorError) -> dict[str, Any]:
    """Return the problem document of a domain error; a failed batch has the status of its
    first refusal and lists every refusal's document."""
    if isinstance(error, errors.BatchFailed):
        documents = [(index, document_of(e)) for index, e in error.refusals]
        refused = [{"index": index, "problem": document} for index, document in documents]
        status = documents[0][1]["status"]
        return problem(status, error.type, error.title, error.detail, errors=refused)
    status = STATUS.get(type(error), 400)
    return problem(status, error.type, error.title, error.detail, **error.extensions)


def problem_response(
    document: dict[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(document),
        status_code=document["status"],
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def error_response(error: errors.AllocatorError, retry_after_seconds: int) -> Response:
    """The response of a domain error: its problem document, with the headers its type asks
    for (when to retry, how to authenticate)."""
    headers = None
    if isinstance(error, errors.Unavailable):
        log.warning("database unavailable: %s", error.__cause__ or error)
        headers = {"Retry-After": str(retry_after_seconds)}
    elif isinstance(error, errors.Unauthorized):
        headers = {"WWW-Authenticate": 'Bearer realm="allocator"'}
    elif isinstance(error, errors.TooManyWatchers):
        headers = {"Retry-After": str(retry_after_seconds)}
    return problem_response(document_of(error), headers)


def allowed_methods(request: Request) -> str:
    """Return the ``Allow`` header of a 405: the methods of every route of the path.

    Starlette names only the methods of the first route that matched the path, but a path such
    as /v1/ranges is served by one route per method (in routers nested in the app's).
    """
    return ", ".join(sorted(_methods(request.app.router.routes, {**request.scope})))


def _methods(routes: list[Any], scope: dict[str, Any]) -> set[str]:
    methods: set[str] = set()
    for route in routes:
        match, child_scope = route.matches({**scope, "method": "OPTIONS"})
        if match is Match.NONE:
            continue
        # Included routers: FastAPI's own (effective_candidates) or Starlette's (Mount.routes).
        candidates = getattr(route, "effective_candidates", None)
        nested = candidates() if callable(candidates) else getattr(route, "routes", None)
        if nested:
            methods |= _methods(nested, {**scope, **child_scope})
        else:
            methods |= getattr(route, "methods", None) or set()
    return methods


def install(app: FastAPI, retry_after_seconds: int) -> None:
    """Register the exception handlers that turn every failure into a problem document."""

    async def allocator_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.AllocatorError)
        return error_response(exc, retry_after_seconds)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        fields = [
            {"field": field_name(error["loc"]), "message": message_of(error)}
            for error in exc.errors()
        ]
        detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return problem_response(
            problem(422, "invalid-request", "Invalid request", detail, errors=fields)
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if isinstance(exc.__cause__, errors.AllocatorError):  # raised where only these get out
            return problem_response(document_of(exc.__cause__))
        slug = HTTP_TYPES.get(exc.status_code, HTTP_ERROR)
        if exc.status_code == 400 and exc.__cause__ is not None:
            # FastAPI's answer to a body it could not decode (bytes that are not UTF-8, JSON
            # nested deeper than the parser goes): the request is invalid, like any bad JSON.
            detail = f"the body could not be read as JSON ({type(exc.__cause__).__name__})"
            return problem_response(
                problem(
                    422,
                    "invalid-request",
                    "Invalid request",
                    detail,
                    errors=[{"field": "body", "message": detail}],
                )
            )
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return problem_response(
            problem(exc.status_code, slug, str(exc.detail), str(exc.detail)), headers
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(
            problem(500, INTERNAL_ERROR, "Internal error", "an unexpected error occurred")
        )

    app.add_exception_handler(errors.AllocatorError, allocator_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
