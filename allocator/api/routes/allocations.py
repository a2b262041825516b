"""/v1/allocations: dynamic and user-requested VIPs, their release and listing."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from allocator.api import audited
from allocator.api.auth import Allocates, AllocatesJson, Reads
from allocator.api.batch_schemas import BatchResults
from allocator.api.deps import json_response, reader
from allocator.api.problem_schemas import refusals
from allocator.api.problems import document_of
from allocator.api.schemas import (
    ADDRESS_PATTERN,
    TEXT_PATTERN,
    AllocationBatch,
    AllocationCreate,
    AllocationList,
    AllocationRead,
    ReleasedAllocations,
)
from allocator.domain import errors
from allocator.domain.address import Family, parse_address
from allocator.service.allocator import AllocationRequest, BatchResult

router = APIRouter(prefix="/v1/allocations", tags=["allocations"])

IP = Annotated[
    str,
    # The pattern is declared, not checked: the domain's parser says what is wrong with an address.
    Path(
        description="an IPv4 or IPv6 address, in any valid text form",
        examples=["10.96.0.10", "fd00:10:96::a"],
        json_schema_extra={"pattern": ADDRESS_PATTERN},
    ),
]


def _owner(description: str) -> Any:
    return Query(min_length=1, max_length=253, pattern=TEXT_PATTERN, description=description)


Owner = Annotated[
    str | None, _owner("release only if this owner holds it (a guard against late releases)")
]


@router.post(
    "",
    operation_id="allocate",
    summary="Allocate an address",
    status_code=201,
    response_model=AllocationRead,
    response_description="Allocated: a new allocation, at a new revision",
    responses={
        200: {
            "model": AllocationRead,
            "description": "Already held: the owner's allocation in that family, unchanged (a retry)",
        },
        **refusals(
            errors.IPNotInRange,
            errors.NoRangeForFamily,
            errors.RangeNotFound,
            errors.IPAlreadyAllocated,
            errors.OwnerHasAllocation,
            errors.IPCoolingDown,
            errors.RangeFull,
            errors.RangeNotAllocatable,
            errors.Forbidden,
            errors.RequestTooLarge,
        ),
    },
    dependencies=[AllocatesJson],
)
async def allocate(body: AllocationCreate, http: Request) -> Response:
    """Without `ip`, a random free address of the family, from the dynamic band first (the static
    band only when the dynamic band is full), in `range` or any range of the family. With `ip`,
    that address (a user-requested IP), if it lies in a range and is free.

    An owner holds one address per family: asking again with no `ip`, or the same one, returns
    the one it holds (200) and changes nothing; asking for another is `owner-has-allocation`.
    """
    allocation, created = await audited.allocate(http, _request(body))
    return json_response(allocation.document(), 201 if created else 200)


def _request(body: AllocationCreate, field: str = "") -> AllocationRequest:
    return AllocationRequest(
        owner=body.owner,
        ip=parse_address(body.ip, field=f"{field}ip") if body.ip is not None else None,
        range=body.range,
        family=Family(body.family) if body.family else None,
        metadata=body.metadata,
    )


@router.post(
    ":batch",
    operation_id="allocateBatch",
    summary="Allocate several addresses in one transaction",
    response_model=BatchResults,
    response_description="Answered: one result per request (atomic: all of them succeeded)",
    responses=refusals(errors.BatchFailed, errors.Forbidden, errors.RequestTooLarge),
    dependencies=[AllocatesJson],
)
async def allocate_batch(body: AllocationBatch, http: Request) -> Response:
    """Up to 1000 allocation requests, answered as if each ran after the one before it, in one
    transaction: a second request of an owner and family gets the first one's allocation back
    (200), as a retry would. New allocations take consecutive revisions in request order.

    `atomic` (default): all succeed or nothing is stored and no revision is taken; a refusal is
    `batch-failed` with the status of the first refused request and the problem of each in
    `errors`. Not atomic: each result stands on its own, and the answer is 200 even when some
    were refused. A dual-stack Service (`RequireDualStack`) is an atomic batch of its owner's two
    families; `PreferDualStack` is the same batch, not atomic. Its body may be larger than other
    routes' (`ALLOCATOR_MAX_BATCH_BODY_BYTES`, 2 MiB by default).
    """
    requests = [_request(r, f"requests[{n}].") for n, r in enumerate(body.requests)]
    return json_response(_results(await audited.allocate_many(http, requests, body.atomic)))


def _results(batch: BatchResult) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for answer in batch.answers:
        if isinstance(answer, errors.AllocatorError):
            problem = document_of(answer)
            results.append({"status": problem["status"], "problem": problem})
        else:
            allocation, created = answer
            results.append({"status": 201 if created else 200, "allocation": allocation.document()})
    return {"results": results, "revision": batch.revision}


@router.get(
    "",
    operation_id="listAllocations",
    summary="List allocations",
    response_model=AllocationList,
    dependencies=[Reads],
    responses=refusals(errors.RangeNotFound),
)
async def list_allocations(
    http: Request,
    range: Annotated[
        str | None,
        Query(min_length=1, max_length=63, pattern=TEXT_PATTERN, description="only this range's"),
    ] = None,
    owner: Annotated[str | None, _owner("only this owner's")] = None,
    family: Annotated[Family | None, Query(description="only this family's")] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="at most this many")] = 500,
    cursor: Annotated[
        str | None, Query(max_length=200, description="the next_cursor of the previous page")
    ] = None,
) -> Response:
    """A page of allocations in numeric address order, read at one revision, and the cursor of
    the next page (null on the last)."""
    page = await reader(http).allocations(
        range_name=range,
        owner=owner,
        family=Family(family) if family else None,
        limit=limit,
        cursor=cursor,
    )
    return json_response(page)


@router.get(
    "/{ip}",
    operation_id="getAllocation",
    summary="Get the allocation of an address",
    response_model=AllocationRead,
    dependencies=[Reads],
    responses=refusals(errors.IPNotAllocated),
)
async def get_allocation(ip: IP, http: Request) -> Response:
    """Who holds the address, since when, and its metadata."""
    return json_response(await reader(http).allocation(parse_address(ip)))


@router.delete(
    "/{ip}",
    operation_id="release",
    summary="Release an address",
    status_code=204,
    response_description="Released",
    dependencies=[Allocates],
    responses=refusals(errors.IPNotAllocated, errors.OwnerMismatch, errors.Forbidden),
)
async def release(ip: IP, http: Request, owner: Owner = None) -> Response:
    """Free the address at once. With `owner`, only if that owner holds it: a late release
    must never free an address that was re-allocated (`owner-mismatch`)."""
    await audited.release(http, parse_address(ip), owner)
    return Response(status_code=204)


@router.delete(
    "",
    operation_id="releaseOwner",
    summary="Release everything an owner holds",
    response_model=ReleasedAllocations,
    dependencies=[Allocates],
    responses=refusals(errors.Forbidden),
)
async def release_owner(
    http: Request,
    owner: Annotated[str, _owner("the owner whose allocations to release")],
) -> Response:
    """Every allocation of the owner (both families), in one transaction; none is an empty
    list, not an error."""
    released = await audited.release_owner(http, owner)
    return json_response({"released": [a.document() for a in released]})
