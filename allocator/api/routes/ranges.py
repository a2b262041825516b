"""/v1/ranges: the service-cluster-ip-range, one object per CIDR."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from allocator.api import audited
from allocator.api.auth import Administers, AdministersJson, Reads
from allocator.api.deps import EngineDep, json_response, reader
from allocator.api.problem_schemas import refusals
from allocator.api.schemas import TEXT_PATTERN, RangeCreate, RangeList, RangePatch, RangeRead
from allocator.domain import errors
from allocator.service.ranges import RangeChange

router = APIRouter(prefix="/v1/ranges", tags=["ranges"])

RangeName = Path(
    min_length=1,
    max_length=63,
    pattern=TEXT_PATTERN,
    description="the range's name",
    examples=["default-ipv4"],
)


@router.post(
    "",
    operation_id="createRange",
    summary="Create a range",
    status_code=201,
    response_model=RangeRead,
    response_description="Created, at a new revision",
    dependencies=[AdministersJson],
    responses=refusals(
        errors.RangeExists, errors.RangeOverlaps, errors.Forbidden, errors.RequestTooLarge
    ),
)
async def create_range(body: RangeCreate, engine: EngineDep) -> Response:
    """A CIDR to allocate from. Its host bits must be zero (the problem names the network
    probably meant); it may not overlap another range (`range-overlaps` names it)."""
    created = await audited.create_range(
        engine, body.name, body.cidr, body.release_cooldown_seconds
    )
    return json_response(created.document(), 201)


@router.get(
    "",
    operation_id="listRanges",
    summary="List ranges",
    response_model=RangeList,
    dependencies=[Reads],
    responses=refusals(),
)
async def list_ranges(http: Request) -> Response:
    """Every range, by name, with its counts."""
    return json_response(await reader(http).ranges())


@router.get(
    "/{name}",
    operation_id="getRange",
    summary="Get a range",
    response_model=RangeRead,
    dependencies=[Reads],
    responses=refusals(errors.RangeNotFound),
)
async def get_range(http: Request, name: str = RangeName) -> Response:
    """The range with its exact counts and static band."""
    return json_response(await reader(http).range_(name))


MERGE_PATCH = "application/merge-patch+json"
_PATCH_BODY = {"schema": {"$ref": "#/components/schemas/RangePatch"}}


@router.patch(
    "/{name}",
    operation_id="changeRange",
    summary="Change a range",
    response_model=RangeRead,
    response_description="Changed, at a new revision (none when nothing changed)",
    dependencies=[AdministersJson],
    responses=refusals(
        errors.RangeNotFound,
        errors.RangeOverlaps,
        errors.AllocationsOutsideRange,
        errors.Forbidden,
        errors.RequestTooLarge,
    ),
    openapi_extra={
        "requestBody": {"content": {MERGE_PATCH: _PATCH_BODY, "application/json": _PATCH_BODY}}
    },
)
async def change_range(body: RangePatch, engine: EngineDep, name: str = RangeName) -> Response:
    """A JSON merge patch (`application/merge-patch+json` or `application/json`) of the members
    to change; the others stay. Each change is one transaction that takes a revision and
    publishes `RANGE_UPDATED` with the new Range object.

    `cidr` grows the range to a CIDR that contains it or shrinks it to one it contains: every
    allocation keeps its address and the static band is recomputed; a shrink that would leave
    addresses out is `allocations-outside-range`. `allocatable: false` drains the range: no new
    allocation (`range-not-allocatable`), while its allocations, their retries and releases go on.
    A new `release_cooldown_seconds` applies to later releases."""
    change = RangeChange(**body.model_dump(exclude_unset=True))
    return json_response(await audited.change_range(engine, name, change))


@router.delete(
    "/{name}",
    operation_id="deleteRange",
    summary="Delete an empty range",
    status_code=204,
    response_description="Deleted",
    dependencies=[Administers],
    responses=refusals(errors.RangeNotFound, errors.RangeNotEmpty, errors.Forbidden),
)
async def delete_range(engine: EngineDep, name: str = RangeName) -> Response:
    """Only a range without allocations can go (`range-not-empty` says how many remain)."""
    await audited.delete_range(engine, name)
    return Response(status_code=204)
