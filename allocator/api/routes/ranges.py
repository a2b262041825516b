"""/v1/ranges: the service-cluster-ip-range, one object per CIDR."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from allocator.api import observed
from allocator.api.auth import Administers, Reads
from allocator.api.deps import EngineDep, JsonBody, json_response, reader
from allocator.api.openapi import problems
from allocator.api.schemas import TEXT_PATTERN, RangeCreate, RangeList, RangeRead

router = APIRouter(prefix="/v1/ranges", tags=["ranges"])

RangeName = Path(min_length=1, max_length=63, pattern=TEXT_PATTERN)


@router.post(
    "",
    status_code=201,
    response_model=RangeRead,
    dependencies=[Administers, JsonBody],
    responses=problems(409),
)
async def create_range(body: RangeCreate, engine: EngineDep) -> Response:
    created = await observed.create_range(engine, body.name, body.cidr)
    return json_response(created.document(), 201)


@router.get("", response_model=RangeList, dependencies=[Reads])
async def list_ranges(http: Request) -> Response:
    return json_response(await reader(http).ranges())


@router.get("/{name}", response_model=RangeRead, dependencies=[Reads], responses=problems(404))
async def get_range(http: Request, name: str = RangeName) -> Response:
    return json_response(await reader(http).range_(name))


@router.delete("/{name}", status_code=204, dependencies=[Administers], responses=problems(404, 409))
async def delete_range(engine: EngineDep, name: str = RangeName) -> Response:
    await observed.delete_range(engine, name)
    return Response(status_code=204)
