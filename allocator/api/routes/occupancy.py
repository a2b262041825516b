"""/v1/ranges/{name}/occupancy: where a range's addresses are taken, for the admin views."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from allocator.api.auth import Reads
from allocator.api.deps import EngineDep, json_response
from allocator.api.problem_schemas import refusals
from allocator.api.routes.ranges import RangeName
from allocator.api.schemas import OccupancyRead
from allocator.domain.errors import RangeNotFound
from allocator.service.occupancy import MAX_CELLS, range_occupancy

router = APIRouter(prefix="/v1/ranges", tags=["ranges"])


@router.get(
    "/{name}/occupancy",
    operation_id="getOccupancy",
    summary="Where a range's addresses are taken",
    response_model=OccupancyRead,
    dependencies=[Reads],
    responses=refusals(RangeNotFound),
)
async def get_occupancy(
    engine: EngineDep,
    name: str = RangeName,
    cells: Annotated[
        int, Query(ge=0, le=MAX_CELLS, description="slices of the range to count (0: none)")
    ] = 0,
) -> Response:
    """Per-band and per-block used counts (a lazy range lists only its materialized blocks),
    and with ``cells`` a map of that many equal slices of the range."""
    occupancy = await range_occupancy(engine, name, cell_count=cells)
    return json_response(occupancy.document())
