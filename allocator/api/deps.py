"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from allocator.domain.errors import UnsupportedMediaType


# Dependencies are async although they await nothing: FastAPI runs a sync one in a worker
# thread, a hop that costs more than the dependency itself on every request.
async def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


EngineDep = Annotated[AsyncEngine, Depends(get_engine)]


def json_response(content: Any, status_code: int = 200) -> Response:
    """Return ``content`` encoded once with orjson (documents are plain dicts already)."""
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


async def require_json(request: Request) -> None:
    """Refuse a body that is not declared JSON (text, form data...) with 415, saying so: it
    would otherwise fail validation with a message about the body's shape, not its type."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as JSON with Content-Type: application/json, not {media_type or 'no type'}"
        )


JsonBody = Depends(require_json)
