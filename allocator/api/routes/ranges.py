"""/v1/ranges: the service-cluster-ip-range, one object per CIDR."""

from __future__ import annotations

from fastapi import APIRouter, Path
from starlette.responses import Response

from allocator.api.deps import EngineDep, json_response
from allocator.api.schemas import RangeCreate, RangeList, RangeRead
from allocator.service import ranges

router = APIRouter(prefix="/v1/ranges", tags=["ranges"])

RangeName = Path(min_length=1, max_length=63)


@router.post("", status_code=201, response_model=RangeRead)
async def create_range(body: RangeCreate, engine: EngineDep) -> Response:
    created = await ranges.create_range(engine, body.name, body.cidr)
    return json_response(created.document(), 201)


@router.get("", response_model=RangeList)
async def list_ranges(engine: EngineDep) -> Response:
    return json_response({"items": [r.document() for r in await ranges.list_ranges(engine)]})


@router.get("/{name}", response_model=RangeRead)
async def get_range(engine: EngineDep, name: str = RangeName) -> Response:
    return json_response((await ranges.get_range(engine, name)).document())


@router.delete("/{name}", status_code=204)
async def delete_range(engine: EngineDep, name: str = RangeName) -> Response:
    await ranges.delete_range(engine, name)
    return Response(status_code=204)
