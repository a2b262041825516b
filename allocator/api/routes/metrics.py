"""/metrics: Prometheus text exposition."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from allocator.api.deps import EngineDep
from allocator.api.metrics import MetricsDep
from allocator.domain.errors import Unavailable
from allocator.service.totals import Totals, totals

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    operation_id="getMetrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(engine: EngineDep, metrics: MetricsDep) -> Response:
    """The process's counters and the database's gauges. When the database cannot be read, the
    counters are still served, with ``allocator_database_up 0`` and no range gauges."""
    current: Totals | None
    try:
        current = await totals(engine)
    except Unavailable:
        current = None
    return Response(metrics.render(current), media_type=CONTENT_TYPE_LATEST)
