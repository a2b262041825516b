"""/v1/allocations: dynamic and user-requested VIPs, their release and listing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from allocator.api import observed
from allocator.api.auth import Allocates, Reads
from allocator.api.deps import JsonBody, json_response, reader
from allocator.api.openapi import problems
from allocator.api.schemas import (
    TEXT_PATTERN,
    AllocationCreate,
    AllocationList,
    AllocationRead,
    FamilyName,
    Released,
)
from allocator.domain.address import Family, parse_address
from allocator.service.allocator import AllocationRequest

router = APIRouter(prefix="/v1/allocations", tags=["allocations"])

Owner = Annotated[str | None, Query(min_length=1, max_length=253, pattern=TEXT_PATTERN)]


@router.post(
    "",
    status_code=201,
    response_model=AllocationRead,
    responses={
        200: {"model": AllocationRead, "description": "Already held by this owner"},
        **problems(404, 409),
    },
    dependencies=[Allocates, JsonBody],
)
async def allocate(body: AllocationCreate, http: Request) -> Response:
    request = AllocationRequest(
        owner=body.owner,
        ip=parse_address(body.ip) if body.ip is not None else None,
        range=body.range,
        family=Family(body.family) if body.family else None,
        metadata=body.metadata,
    )
    allocation, created = await observed.allocate(http, request)
    return json_response(allocation.document(), 201 if created else 200)


@router.get("", response_model=AllocationList, dependencies=[Reads], responses=problems(404))
async def list_allocations(
    http: Request,
    range: Annotated[str | None, Query(min_length=1, max_length=63, pattern=TEXT_PATTERN)] = None,
    owner: Owner = None,
    family: FamilyName | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    page = await reader(http).allocations(
        range_name=range,
        owner=owner,
        family=Family(family) if family else None,
        limit=limit,
        cursor=cursor,
    )
    return json_response(page)


@router.get("/{ip}", response_model=AllocationRead, dependencies=[Reads], responses=problems(404))
async def get_allocation(ip: str, http: Request) -> Response:
    return json_response(await reader(http).allocation(parse_address(ip)))


@router.delete("/{ip}", status_code=204, dependencies=[Allocates], responses=problems(404, 409))
async def release(ip: str, http: Request, owner: Owner = None) -> Response:
    await observed.release(http, parse_address(ip), owner)
    return Response(status_code=204)


@router.delete("", response_model=Released, dependencies=[Allocates])
async def release_owner(
    http: Request,
    owner: Annotated[str, Query(min_length=1, max_length=253, pattern=TEXT_PATTERN)],
) -> Response:
    released = await observed.release_owner(http, owner)
    return json_response({"released": [a.document() for a in released]})
