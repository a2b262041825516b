"""Probes: liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from allocator.api.deps import EngineDep, json_response
from allocator.api.schemas import Health
from allocator.store.migration import is_current

router = APIRouter(tags=["health"])

READY_TIMEOUT = 2.0


@router.get(
    "/healthz",
    operation_id="getHealth",
    summary="Liveness probe",
    response_model=Health,
    response_description="The process runs",
)
async def healthz() -> Response:
    """200 while the process runs, whatever the database does."""
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    operation_id="getReadiness",
    summary="Readiness probe",
    response_model=Health,
    response_description="Ready: the database answers and its schema is the newest",
    responses={503: {"model": Health, "description": "Not ready; reason says why"}},
)
async def readyz(request: Request, engine: EngineDep) -> Response:
    """200 when the database answers and its schema is at the newest migration, else 503
    (route traffic elsewhere until it is ready again). `listener` says whether the feed's LISTEN
    connection is live and where; it does not decide readiness, since polling delivers the feed
    meanwhile."""
    listener = getattr(request.app.state, "listener", None)
    feed = {
        "live": bool(listener and listener.connected),
        "server": getattr(listener, "server", None),
    }
    try:
        current = await asyncio.wait_for(is_current(engine), READY_TIMEOUT)
    except Exception as exc:
        reason = type(exc).__name__
        return json_response({"status": "unavailable", "reason": reason, "listener": feed}, 503)
    if not current:
        reason = "schema not migrated"
        return json_response({"status": "unavailable", "reason": reason, "listener": feed}, 503)
    return json_response({"status": "ok", "listener": feed})
