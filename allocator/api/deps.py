"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from allocator.domain.errors import InvalidRequest
from allocator.service.allocator import Allocator
from allocator.service.reader import Reader


# Dependencies are async although they await nothing: FastAPI runs a sync one in a worker
# thread, a hop that costs more than the dependency itself on every request.
async def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


EngineDep = Annotated[AsyncEngine, Depends(get_engine)]


def allocator(request: Request) -> Allocator:
    """The app's allocator (a plain attribute: no dependency to resolve on the hot path)."""
    found: Allocator = request.app.state.allocator
    return found


def reader(request: Request) -> Reader:
    found: Reader = request.app.state.reader
    return found


def json_response(content: Any, status_code: int = 200) -> Response:
    """Return ``content`` as JSON: text as it came from Postgres, anything else encoded once with
    orjson (documents are plain dicts already)."""
    body = content if isinstance(content, bytes | str) else orjson.dumps(content)
    return Response(body, status_code=status_code, media_type="application/json")


def require_json(request: Request) -> None:
    """Refuse a body that is not declared JSON (text, form data...) as an invalid request that
    says so: it would otherwise fail validation with a message about the body's shape, not its
    type."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise InvalidRequest(
            f"send the body as JSON with Content-Type: application/json, not {media_type or 'no type'}",
            field="body",
        )


_query_names: dict[int, frozenset[str]] = {}
"""The query parameters of each route (routes live as long as the app): computed once."""


def _query_params_of(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_params_of(sub)
    return names


def reject_unknown_query(request: Request) -> None:
    """Refuse query parameters the route does not define, and any given twice (422), as unknown
    body fields are: a misspelt ``ownr=`` must not silently widen a release or a listing to
    everything, nor ``owner=a&owner=b`` mean whichever one the framework keeps."""
    route = request.scope.get("route")
    if route is None or not request.query_params:
        return
    known = _query_names.get(id(route))
    if known is None:
        known = _query_names[id(route)] = frozenset(_query_params_of(route.dependant))
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise InvalidRequest(
            f"unknown query parameter {unknown[0]!r} (known: {', '.join(sorted(known)) or 'none'})",
            field=unknown[0],
        )
    if len(request.query_params.multi_items()) > len(request.query_params):
        repeated = sorted(
            k for k in request.query_params if len(request.query_params.getlist(k)) > 1
        )
        raise InvalidRequest(
            f"query parameter {repeated[0]!r} is given more than once", field=repeated[0]
        )
