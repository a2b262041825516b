"""The problem responses, declared in the OpenAPI schema as they are sent.

Routes name the refusals of their own (``problems(404, 409)``); the refusals every ``/v1`` route
can give (401, 403, 413, 422, 503) are declared once per router in ``COMMON``. ``install``
makes the schema say what the server sends: ``application/problem+json`` for every 4xx and 5xx.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict

from allocator.api.problems import MEDIA_TYPE


class Problem(BaseModel):
    """An RFC 9457 problem document; extension members depend on the type."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str


class FieldError(BaseModel):
    field: str
    message: str


class InvalidRequestProblem(Problem):
    """A 422: ``invalid-request`` (with ``errors``, one per bad field) or a domain refusal such as
    ``ip-not-in-range`` (without)."""

    errors: list[FieldError] | None = None


DESCRIPTIONS = {
    401: "No bearer token, or one that is not valid (unauthorized)",
    403: "The token's role may not do this (forbidden)",
    404: "Not found",
    409: "Conflict with the current state",
    410: "Revision compacted or unknown",
    413: "Request body too large (request-too-large)",
    422: "Invalid request",
    429: "Too many open watches for this token (too-many-watchers)",
    503: "Database unavailable; retry after Retry-After seconds",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Return the ``responses`` declaration of these problem statuses."""
    return {
        status: {
            "model": InvalidRequestProblem if status == 422 else Problem,
            "description": DESCRIPTIONS[status],
        }
        for status in statuses
    }


COMMON = problems(401, 403, 413, 422, 503)
"""What any route under /v1 may answer, whatever it does."""


def install(app: FastAPI) -> None:
    """Serve an OpenAPI schema whose error responses are ``application/problem+json``."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for path in document.get("paths", {}).values():
                for operation in path.values():
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        if status[0] in "45" and "application/json" in content:
                            content[MEDIA_TYPE] = content.pop("application/json")
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]
