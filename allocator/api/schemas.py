"""Request and response bodies of the HTTP API (``docs/api.md``), as the OpenAPI schema declares
them.

The routes return documents encoded once (``Range.document()``, ``Allocation.document()``) or
built as JSON by Postgres, never through these models, which would cost the hot path a
serialization; the models are what the schema promises those documents are, and the API tests
check every answer they get against them, member by member (``tests/api/declared.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from allocator.domain.address import Family, parse_address, parse_network
from allocator.domain.errors import InvalidRequest
from allocator.domain.metadata import check_metadata
from allocator.domain.range import MAX_RELEASE_COOLDOWN_SECONDS, NAME_PATTERN, validate_name

# The shapes of names, addresses and CIDRs, so the schema tells clients (and generators of test
# input) what can be valid; the domain checks the rest (octet ranges, leading zeros, host bits).
ADDRESS_PATTERN = r"^[0-9A-Fa-f:.]{2,45}$"
CIDR_PATTERN = r"^[0-9A-Fa-f:.]{2,45}/[0-9]{1,3}$"
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""Owners and names looked up (not created) in queries and paths: no control characters, which
no stored owner or name has and Postgres text cannot always hold (NUL)."""


_SHAPE_CHECKS: dict[str, Callable[[str], object]] = {
    NAME_PATTERN.pattern: validate_name,
    ADDRESS_PATTERN: parse_address,
    CIDR_PATTERN: parse_network,
}


def shape_refusal(pattern: str, value: str) -> str | None:
    """Return what is wrong with ``value``, which does not match ``pattern``, in the domain's
    words (``'10.96.0.0/x' is not a CIDR``) rather than the expression's; None for a pattern of
    another kind."""
    if pattern == TEXT_PATTERN:
        return "must not contain control characters"
    check = _SHAPE_CHECKS.get(pattern)
    if check is None:
        return None
    try:
        check(value)
    except InvalidRequest as refused:
        return refused.detail
    return None


CREATED_AT = "2026-11-25T10:00:00Z"
RANGE_EXAMPLE: dict[str, Any] = {
    "name": "default-ipv4",
    "cidr": "10.96.0.0/12",
    "family": "IPv4",
    "size": 1048574,
    "allocated": 3,
    "cooling": 1,
    "free": 1048570,
    "static_band": {"first": "10.96.0.1", "last": "10.96.1.0", "size": 256},
    "release_cooldown_seconds": 300,
    "allocatable": True,
    "created_at": CREATED_AT,
    "revision": 1,
}
ALLOCATION_EXAMPLE: dict[str, Any] = {
    "ip": "10.96.0.10",
    "family": "IPv4",
    "range": "default-ipv4",
    "owner": "kube-system/kube-dns",
    "metadata": {"port": 53},
    "created_at": CREATED_AT,
    "revision": 42,
}


def examples(*documents: dict[str, Any]) -> ConfigDict:
    """Return the config of a model whose schema shows ``documents`` as examples."""
    return ConfigDict(json_schema_extra={"examples": list(documents)})


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def absent_or(description: str) -> Any:
    """Return the field of a member that is left out (never null) when it has no value; its
    annotation is ``T | SkipJsonSchema[None]``."""
    return Field(default=None, description=description, json_schema_extra=_no_default)


ReleaseCooldown = Annotated[
    int,
    Field(
        strict=True,  # 30.0 and "30" are not integers
        ge=0,
        le=MAX_RELEASE_COOLDOWN_SECONDS,
        description="seconds a released address cools down (only its releasing owner may take "
        "it back meanwhile); 0: reusable at once. A change applies to later releases only",
    ),
]


class RangeCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "default-ipv4", "cidr": "10.96.0.0/12"},
                {
                    "name": "default-ipv6",
                    "cidr": "fd00:10:96::/112",
                    "release_cooldown_seconds": 300,
                },
            ]
        },
    )

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=NAME_PATTERN.pattern,
        description="1-63 characters of [a-z0-9-], alphanumeric at both ends",
    )
    cidr: str = Field(
        min_length=1,
        max_length=64,
        pattern=CIDR_PATTERN,
        description="the network, host bits zero: IPv4 prefix 8-30, IPv6 prefix 64-126",
    )
    release_cooldown_seconds: ReleaseCooldown = 0


class RangePatch(BaseModel):
    """A JSON merge patch of a range: the members given change, the others stay."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"cidr": "10.96.0.0/11"},
                {"allocatable": False},
                {"release_cooldown_seconds": 300},
            ]
        },
    )

    # Typed without None: in a merge patch a null removes a member, and no member of a range
    # can be removed (absent, it is left as it is).
    cidr: Annotated[str, Field(min_length=1, max_length=64, pattern=CIDR_PATTERN)] = absent_or(
        "grow the range to a CIDR that contains it, or shrink it to one it contains (same "
        "family, the prefix limits of creation); every allocation keeps its address"
    )
    allocatable: Annotated[bool, Field(strict=True)] = absent_or(
        "false drains the range (no new allocation; existing ones, their retries and releases "
        "go on); true serves again"
    )
    release_cooldown_seconds: ReleaseCooldown = absent_or(
        "seconds a released address cools down, 0 to 86400"
    )


class Span(BaseModel):
    """Consecutive usable addresses; ``first`` and ``last`` are null when ``size`` is 0."""

    first: str | None
    last: str | None
    size: int


class RangeRead(BaseModel):
    """A range: its CIDR, exact counts (integers, even beyond 2^53) and its static band."""

    model_config = examples(RANGE_EXAMPLE)

    name: str
    cidr: str = Field(description="canonical text")
    family: Family
    size: int = Field(description="usable addresses: not the network, nor the IPv4 broadcast")
    allocated: int
    cooling: int = Field(description="released addresses still cooling down")
    free: int = Field(description="size - allocated - cooling")
    static_band: Span = Field(
        description="the first usable addresses, for user-requested IPs (KEP-3070); "
        "dynamic allocation takes them only when the rest is full"
    )
    release_cooldown_seconds: int
    allocatable: bool = Field(description="false while the range is drained")
    created_at: datetime
    revision: int = Field(description="the revision that created the range")


class RangeList(BaseModel):
    model_config = examples({"items": [RANGE_EXAMPLE]})

    items: list[RangeRead] = Field(description="ordered by name")


class AllocationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"owner": "default/web"},
                {"owner": "kube-system/kube-dns", "ip": "10.96.0.10", "metadata": {"port": 53}},
                {"owner": "default/web", "family": "IPv6", "range": "default-ipv6"},
            ]
        },
    )

    owner: str = Field(
        min_length=1,
        max_length=253,
        description="who holds the address (a namespace/name, a UID...): 1-253 printable characters",
    )
    ip: str | None = Field(
        default=None,
        max_length=64,
        pattern=ADDRESS_PATTERN,
        description="the address wanted (a user-requested IP); absent, a free one is chosen",
    )
    range: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=TEXT_PATTERN,
        description="the range to take it from; absent, any range of the family",
    )
    family: Family | None = Field(
        default=None,
        description="absent: the family of ip, else of range, else IPv4; one that contradicts them is refused",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="any JSON object, kept with the allocation and sent in its events "
        "(at most 16 KiB as JSON, 8 levels deep)",
    )

    @field_validator("owner")
    @classmethod
    def printable(cls, owner: str) -> str:
        if not owner.isprintable():
            raise ValueError("owner must consist of printable characters")
        return owner

    @field_validator("metadata")
    @classmethod
    def bounded(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        check_metadata(metadata)
        return metadata


MAX_BATCH = 1000
"""Requests in one batch at most."""


class AllocationBatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "atomic": True,
                    "requests": [
                        {"owner": "default/web", "family": "IPv6"},
                        {"owner": "default/web", "family": "IPv4", "ip": "10.96.0.20"},
                    ],
                },
                {
                    "atomic": False,
                    "requests": [{"owner": "default/api"}, {"owner": "default/db"}],
                },
            ]
        },
    )

    atomic: bool = Field(
        default=True,
        strict=True,  # "yes" or 1 is not a boolean
        description="true: all succeed together, or nothing is stored (batch-failed); "
        "false: each succeeds or fails on its own",
    )
    requests: list[AllocationCreate] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="1-1000 bodies of POST /v1/allocations, answered as if run one after the "
        "other, in order, in one transaction",
    )


class AllocationRead(BaseModel):
    """A held address and who holds it."""

    model_config = examples(ALLOCATION_EXAMPLE)

    ip: str = Field(description="canonical text (IPv6 compressed, lowercase)")
    family: Family
    range: str
    owner: str
    metadata: dict[str, Any]
    created_at: datetime
    revision: int = Field(description="the revision that created the allocation")


class AllocationList(BaseModel):
    model_config = examples({"items": [ALLOCATION_EXAMPLE], "revision": 42, "next_cursor": None})

    items: list[AllocationRead] = Field(description="in numeric address order")
    revision: int = Field(description="the revision the page was read at")
    next_cursor: str | None = Field(description="the cursor of the next page; null on the last")


class ReleasedAllocations(BaseModel):
    model_config = examples({"released": [ALLOCATION_EXAMPLE]})

    released: list[AllocationRead] = Field(description="every allocation the owner held")


class FeedListener(BaseModel):
    live: bool = Field(description="whether the feed's LISTEN connection is up (else it polls)")
    server: str | None = Field(description="the server it listens on (host:port), null when down")


class Health(BaseModel):
    model_config = examples(
        {"status": "ok", "listener": {"live": True, "server": "10.0.0.5:5432"}},
        {"status": "unavailable", "reason": "TimeoutError"},
    )

    status: Literal["ok", "unavailable"]
    reason: str | SkipJsonSchema[None] = absent_or("why it is not ready")
    listener: FeedListener | SkipJsonSchema[None] = absent_or(
        "readiness only: the feed's LISTEN connection to the primary (it does not decide "
        "readiness: polling delivers the feed meanwhile)"
    )


BandName = Literal["static", "dynamic"]


class BandUsage(Span):
    band: BandName
    used: int
    blocks: int = Field(description="blocks the band is cut into")
    materialized_blocks: int = Field(description="blocks that exist (all, in an eager range)")


class BlockUsage(Span):
    band: BandName
    block_no: int
    used: int


class CellUsage(Span):
    used: int


STATIC_SPAN = RANGE_EXAMPLE["static_band"]
DYNAMIC_SPAN = {"first": "10.96.1.1", "last": "10.111.255.254", "size": 1048318}


class OccupancyRead(BaseModel):
    """How a range is used: per band, per materialized block, and as a map of equal slices."""

    model_config = examples(
        {
            "range": RANGE_EXAMPLE,
            "revision": 4,
            "lazy": False,
            "bands": [
                {"band": "static", **STATIC_SPAN, "used": 1, "blocks": 1, "materialized_blocks": 1},
                {
                    "band": "dynamic",
                    **DYNAMIC_SPAN,
                    "used": 2,
                    "blocks": 256,
                    "materialized_blocks": 256,
                },
            ],
            "blocks": [{"band": "static", "block_no": 0, **STATIC_SPAN, "used": 1}],
            "cells": None,
        }
    )

    range: RangeRead
    revision: int
    lazy: bool = Field(description="blocks are created on first use; absent blocks are free")
    bands: list[BandUsage]
    blocks: list[BlockUsage]
    cells: list[CellUsage] | None = Field(
        description="the range cut into equal slices (only when asked for, eager ranges only)"
    )
