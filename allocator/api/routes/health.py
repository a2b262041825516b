"""Probes: liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.responses import Response

from allocator.api.deps import EngineDep, json_response
from allocator.store.migration import is_current

router = APIRouter(tags=["health"])

READY_TIMEOUT = 2.0


@router.get("/healthz")
async def healthz() -> Response:
    """200 while the process runs."""
    return json_response({"status": "ok"})


@router.get("/readyz")
async def readyz(engine: EngineDep) -> Response:
    """200 when the database answers and its schema is at the newest migration, else 503."""
    try:
        current = await asyncio.wait_for(is_current(engine), READY_TIMEOUT)
    except Exception as exc:
        return json_response({"status": "unavailable", "reason": type(exc).__name__}, 503)
    if not current:
        return json_response({"status": "unavailable", "reason": "schema not migrated"}, 503)
    return json_response({"status": "ok"})
