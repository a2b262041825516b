"""The OpenAPI schema as served: the contract that clients are generated from.

Every operation says in its decorator what a generated client needs:

    @router.post(
        "",
        operation_id="allocate",              # camelCase, stable: a function name in every client
        summary="Allocate an address",
        status_code=201,
        response_model=AllocationRead,       # documentation: hot routes send encoded documents
        responses={200: {...}, **refusals(RangeNotFound, IPAlreadyAllocated, ...)},
    )
    async def allocate(...):
        \"\"\"What it does and what it refuses (the operation's description).\"\"\"

Parameters carry a ``description``; bodies and responses carry examples in their models.
``install`` then makes the document say what this server does: problem responses are
``application/problem+json``; optional parameters are never null; on an open server (no tokens file) no operation needs a token or
answers 401 or 403; the watch's ``timeout_seconds`` goes up to this server's maximum.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, routing
from fastapi.openapi.utils import get_openapi

from allocator.api.auth import bearer, permission_of
from allocator.api.problem_schemas import Problem
from allocator.api.problems import MEDIA_TYPE

TAGS = [
    {"name": "ranges", "description": "The service-cluster-ip-range: one object per CIDR."},
    {
        "name": "allocations",
        "description": "Service VIPs: dynamic or user-requested, one per owner and family, "
        "released by address or by owner.",
    },
    {
        "name": "events",
        "description": "The ordered feed of every change, with dense revisions: polled, or "
        "watched as a stream (list+watch in one call with initial=true).",
    },
    {"name": "health", "description": "Probes for the orchestrator; no token needed."},
    {"name": "operations", "description": "Prometheus metrics; no token needed."},
]

AUTH_STATUSES = ("401", "403")
OPEN = " This server has no tokens file: no operation needs a token."
WATCH = ("/v1/watch", "get", "timeout_seconds")


def install(app: FastAPI, *, open_server: bool, watch_timeout_seconds: int) -> None:
    """Serve an OpenAPI schema that says what this server does."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=TAGS,
            )
            if open_server:
                document["info"]["description"] += OPEN
            else:
                _bearer_where_needed(document, app.routes)
            for item in document.get("paths", {}).values():
                for operation in item.values():
                    _problems_as_problem_json(operation)
                    _parameters_without_null(operation)
                    if open_server:
                        for status in AUTH_STATUSES:
                            operation.get("responses", {}).pop(status, None)
            _bound_watch_timeout(document, watch_timeout_seconds)
            _add_problem_catalogue(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]


def _bearer_where_needed(document: dict[str, Any], routes: list[Any]) -> None:
    """Declare the bearer scheme on every operation whose route asks for a permission (the auth
    dependency reads the header itself, so FastAPI does not know it is a security scheme)."""
    name = bearer.scheme_name
    for route in routing.iter_route_contexts(routes):
        if isinstance(route.original_route, routing.APIRoute) and permission_of(route.dependant):
            for method in route.methods or ():
                document["paths"][route.path_format][method.lower()]["security"] = [{name: []}]
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[name] = bearer.model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _problems_as_problem_json(operation: dict[str, Any]) -> None:
    """Move the schema FastAPI put under application/json to application/problem+json, where a
    response declares that media type (``refusals`` does)."""
    for response in operation.get("responses", {}).values():
        content = response.get("content", {})
        if MEDIA_TYPE in content and "application/json" in content:
            content[MEDIA_TYPE] = content.pop("application/json")


def _parameters_without_null(operation: dict[str, Any]) -> None:
    """Declare an optional parameter as its type alone, not "its type or null" (FastAPI's
    rendering of ``str | None = None``): a query string cannot carry a null, and a generated
    client would offer one."""
    for parameter in operation.get("parameters", []):
        schema = parameter["schema"]
        variants = schema.get("anyOf", [])
        if len(variants) == 2 and {"type": "null"} in variants:
            del schema["anyOf"]
            schema.update(next(v for v in variants if v != {"type": "null"}))


def _bound_watch_timeout(document: dict[str, Any], maximum: int) -> None:
    path, method, name = WATCH
    for parameter in document["paths"][path][method]["parameters"]:
        if parameter["name"] == name:
            parameter["schema"]["maximum"] = maximum
            parameter["description"] += f" (at most {maximum} on this server, its default)"


def _add_problem_catalogue(document: dict[str, Any]) -> None:
    """Add ``Problem`` and ``ProblemType``, which list every problem type the server sends (each
    response declares the ones it can be)."""
    catalogue = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(catalogue.pop("$defs"))
    schemas["Problem"] = catalogue
