"""The problem documents as schemas: one per problem type, with its extension members.

Each route names the domain errors it refuses with: ``responses=refusals(RangeNotFound, ...)``.
The schema then declares, per status, the union of those problem types (discriminated by
``type``), so that a generated client reads ``holder`` of an ``ip-already-allocated`` as a typed
field. Every problem type's schema is made from the domain's error class and ``SHAPES`` below, so
a new error needs only its entry here (when it carries extension members).
"""

from __future__ import annotations

import enum
import functools
import operator
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import SkipJsonSchema

from allocator.api.problems import HTTP_ERROR, HTTP_TYPES, INTERNAL_ERROR, MEDIA_TYPE, STATUS
from allocator.api.schemas import ALLOCATION_EXAMPLE, AllocationRead, absent_or
from allocator.domain import errors


class BatchRefusal(BaseModel):
    index: int = Field(description="the request's place in the batch, from 0")
    problem: Problem = Field(description="the problem that request alone would get")


class FieldError(BaseModel):
    field: str = Field(
        description="the bad field: a body member (metadata.a), a parameter, or body"
    )
    message: str


@dataclass(frozen=True, slots=True)
class Member:
    """An extension member of a problem type."""

    type: Any
    description: str
    example: Any
    required: bool = True


@dataclass(frozen=True, slots=True)
class Shape:
    """What a problem type's schema says beyond the common members."""

    description: str
    detail: str
    """An example ``detail``."""
    members: dict[str, Member] = field(default_factory=dict)


SHAPES: dict[type[errors.AllocatorError], Shape] = {
    errors.InvalidRequest: Shape(
        "The request is malformed: a wrong type, a missing or unknown field or parameter, a "
        "malformed address or CIDR, a family that contradicts the address.",
        "owner: String should have at least 1 character",
        {
            "errors": Member(
                list[FieldError],
                "one entry per bad field",
                [{"field": "owner", "message": "String should have at least 1 character"}],
            )
        },
    ),
    errors.IPNotInRange: Shape(
        "The address lies in no range, or is the network or IPv4 broadcast address of one.",
        "10.97.0.0 is the network address of 10.97.0.0/16 and is never allocated",
    ),
    errors.NoRangeForFamily: Shape(
        "No range of the family exists to allocate from.", "no range of family IPv6"
    ),
    errors.RangeNotFound: Shape("No range has this name.", "no range named 'default-ipv6'"),
    errors.IPNotAllocated: Shape(
        "Nobody holds this address. One that cools down after its release says until when and "
        "who released it.",
        "10.96.0.10 is not allocated",
        {
            "available_at": Member(
                datetime,
                "a cooling address only: when its cool-down ends",
                "2026-11-25T10:05:00.000000Z",
                required=False,
            ),
            "released_by": Member(
                str, "a cooling address only: the owner that released it", "default/old", False
            ),
        },
    ),
    errors.RangeExists: Shape(
        "A range of this name exists.", "a range named 'default-ipv4' already exists"
    ),
    errors.RangeOverlaps: Shape(
        "The CIDR overlaps an existing range.",
        "10.96.0.0/16 overlaps range 'default-ipv4'",
        {"conflicting_range": Member(str, "the name of the range it overlaps", "default-ipv4")},
    ),
    errors.RangeNotEmpty: Shape(
        "The range still holds allocations; release them first.",
        "range 'default-ipv4' still holds 3 allocations",
        {"allocated": Member(int, "how many allocations it holds", 3)},
    ),
    errors.RangeFull: Shape(
        "No free address is left where the request may take one.",
        "no free address in range 'default-ipv4'",
    ),
    errors.IPAlreadyAllocated: Shape(
        "Another owner holds the address asked for.",
        "10.96.0.10 is already allocated to 'kube-system/kube-dns'",
        {"holder": Member(str, "the owner that holds it", "kube-system/kube-dns")},
    ),
    errors.OwnerHasAllocation: Shape(
        "The owner holds another address of this family (an owner holds one per family).",
        "'kube-system/kube-dns' already holds 10.96.0.10 in IPv4",
        {"allocation": Member(AllocationRead, "the allocation it holds", ALLOCATION_EXAMPLE)},
    ),
    errors.OwnerMismatch: Shape(
        "Another owner holds the address: a late release never frees a re-allocated address.",
        "10.96.0.10 is held by 'default/new', not 'default/old'",
        {"holder": Member(str, "the owner that holds it", "default/new")},
    ),
    errors.IPCoolingDown: Shape(
        "The address was released a moment ago and cools down: only the owner that released it "
        "may take it back until available_at.",
        "10.96.0.10 was released by 'default/old' and cools down until 2026-11-25T10:05:00.000000Z",
        {
            "available_at": Member(
                datetime, "when its cool-down ends (RFC 3339)", "2026-11-25T10:05:00.000000Z"
            ),
            "released_by": Member(str, "the owner that released it", "default/old"),
        },
    ),
    errors.BatchFailed: Shape(
        "Requests of an atomic batch were refused, so nothing was stored. The status is that of "
        "the first refused request; errors lists every refused one.",
        "1 of 2 requests refused, nothing stored; request 1: no free address in range 'small'",
        {
            "errors": Member(
                list[BatchRefusal],
                "every refused request: its index and the problem it alone would get",
                [
                    {
                        "index": 1,
                        "problem": {
                            "type": "range-full",
                            "title": "No free address",
                            "status": 409,
                            "detail": "no free address in range 'small'",
                        },
                    }
                ],
            )
        },
    ),
    errors.RangeNotAllocatable: Shape(
        "The range is drained: it serves no new allocation (its allocations stay, and retries "
        "and releases of them work).",
        "range 'old-ipv4' is drained: it serves no new allocation",
    ),
    errors.AllocationsOutsideRange: Shape(
        "The shrink would leave allocations or cooling addresses outside the new CIDR (or on "
        "its network or broadcast address); release them first.",
        "2 allocated or cooling addresses lie outside 10.96.0.0/25",
        {
            "count": Member(int, "how many addresses lie outside", 2),
            "examples": Member(
                list[str], "up to 10 of them, in address order", ["10.96.0.200", "10.96.0.201"]
            ),
        },
    ),
    errors.RevisionCompacted: Shape(
        "The events after this revision were deleted, or the watcher fell too far behind: "
        "list again (initial=true) and carry on.",
        "revision 3 is compacted (oldest retained event is 41); list again with initial=true",
        {
            "compacted": Member(
                int, "the newest deleted revision (absent on a cut-off)", 40, required=False
            )
        },
    ),
    errors.RevisionUnknown: Shape(
        "The revision is beyond the head (or the log was reset): list again (initial=true).",
        "revision 9999 is beyond the head revision 42",
        {
            "head": Member(int, "the head revision (absent in an ERROR event)", 42, required=False),
            "epoch": Member(
                str,
                "the epoch of the head revision (absent in an ERROR event)",
                "1-6f1c0d3e-4d8f-4a57-9c55-3c1e6f0c8d2a",
                required=False,
            ),
        },
    ),
    errors.Unauthorized: Shape(
        "No bearer token, or one the server does not know.", "the bearer token is not valid"
    ),
    errors.Forbidden: Shape(
        "The token's role does not grant this.",
        "token 'agent' (role reader) may not allocate",
        {
            "role": Member(str, "the token's role", "reader"),
            "permission": Member(str, "the permission needed", "allocate"),
        },
    ),
    errors.RequestTooLarge: Shape(
        "The request body is over the server's limit.",
        "request bodies are limited to 65536 bytes",
        {"limit": Member(int, "the limit, in bytes", 65536)},
    ),
    errors.TooManyWatchers: Shape(
        "The token holds as many open watches as it may; retry after Retry-After seconds.",
        "token 'agent' already holds 256 open watches",
        {"limit": Member(int, "open watches a token may hold", 256)},
    ),
    errors.Unavailable: Shape(
        "The database could not be reached in time; retry after Retry-After seconds.",
        "database unavailable: ConnectionRefusedError",
    ),
}


class Problem(BaseModel):
    """An RFC 9457 problem document. Each response names the types it can be, with their
    extension members; clients ignore members they do not know. Where a response names no
    single type (a batch's refused request), the members are those of its type."""

    model_config = ConfigDict(extra="allow")

    type: ProblemType
    title: str
    status: int
    detail: str


# Typed Any: types built at run time, from the domain's errors.
LITERAL: Any = Literal
ABSENT: Any = SkipJsonSchema


BATCH_STATUSES = (404, 409, 422)
"""The statuses of a failed batch: those of the refusals of an allocation."""


def _statuses(error: type[errors.AllocatorError]) -> tuple[int, ...]:
    return BATCH_STATUSES if error is errors.BatchFailed else (STATUS[error],)


def _model(error: type[errors.AllocatorError]) -> type[BaseModel]:
    shape = SHAPES[error]
    statuses = _statuses(error)
    members: dict[str, Any] = {
        name: (member.type, Field(description=member.description))
        if member.required
        else (member.type | ABSENT[None], absent_or(member.description))
        for name, member in shape.members.items()
    }
    example = {
        "type": error.type,
        "title": error.title,
        "status": 409 if error is errors.BatchFailed else statuses[0],
        "detail": shape.detail,
        **{name: member.example for name, member in shape.members.items()},
    }
    return create_model(
        f"{error.__name__}Problem",
        __config__=ConfigDict(json_schema_extra={"examples": [example]}),
        __doc__=shape.description,
        type=(LITERAL[error.type], ...),
        title=(str, ...),
        status=(LITERAL[statuses], ...),
        detail=(str, ...),
        **members,
    )


MODELS = {error: _model(error) for error in SHAPES}
"""The schema of each problem type the domain reports."""

ProblemType = enum.StrEnum(  # type: ignore[misc]
    "ProblemType",
    {
        slug.upper().replace("-", "_"): slug
        for slug in [
            *(error.type for error in SHAPES),
            *HTTP_TYPES.values(),
            HTTP_ERROR,
            INTERNAL_ERROR,
        ]
    },
)
"""Every problem type the server sends."""

Problem.model_rebuild()
BatchRefusal.model_rebuild()
MODELS[errors.BatchFailed].model_rebuild()

HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'how to authenticate: Bearer realm="allocator"',
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "seconds to wait before opening another watch",
            "schema": {"type": "integer"},
        }
    },
    503: {
        "Retry-After": {
            "description": "seconds to wait before retrying",
            "schema": {"type": "integer"},
        }
    },
}


def refusals(*refused: type[errors.AllocatorError]) -> dict[int | str, dict[str, Any]]:
    """Return the ``responses`` of a ``/v1`` operation that refuses with these errors, and with
    invalid-request, unauthorized and database-unavailable, which every one of them may answer
    (``openapi.install`` drops 401 and 403 on a server without tokens)."""
    named: list[type[errors.AllocatorError]] = [
        errors.InvalidRequest,
        errors.Unauthorized,
        *refused,
        errors.Unavailable,
    ]
    by_status: dict[int, list[type[errors.AllocatorError]]] = {}
    for error in dict.fromkeys(named):
        for status in _statuses(error):
            by_status.setdefault(status, []).append(error)
    return {status: _response(status, found) for status, found in sorted(by_status.items())}


def _response(status: int, refused: list[type[errors.AllocatorError]]) -> dict[str, Any]:
    models = [MODELS[error] for error in refused]
    model: Any = models[0]
    if len(models) > 1:
        model = Annotated[functools.reduce(operator.or_, models), Field(discriminator="type")]
    described = (
        error.type + (f" ({', '.join(SHAPES[error].members)})" if SHAPES[error].members else "")
        for error in refused
    )
    response: dict[str, Any] = {
        "model": model,
        "description": f"{HTTPStatus(status).phrase}: {'; '.join(described)}",
        "content": {MEDIA_TYPE: {}},  # the schema of the model goes here (see openapi.install)
    }
    if status in HEADERS:
        response["headers"] = HEADERS[status]
    return response
