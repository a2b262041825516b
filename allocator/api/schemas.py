"""Request and response bodies of the HTTP contract (API.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from allocator.domain.metadata import check_metadata

FamilyName = Literal["IPv4", "IPv6"]

# The shapes of names, addresses and CIDRs, so the schema tells clients (and generators of test
# input) what can be valid; the domain checks the rest (octet ranges, leading zeros, host bits).
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
ADDRESS_PATTERN = r"^[0-9A-Fa-f:.]{2,45}$"
CIDR_PATTERN = r"^[0-9A-Fa-f:.]{2,45}/[0-9]{1,3}$"
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""Owners and names looked up (not created) in queries and paths: no control characters, which
no stored owner or name has and Postgres text cannot always hold (NUL)."""


class RangeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63, pattern=NAME_PATTERN, examples=["default-ipv4"])
    cidr: str = Field(min_length=1, max_length=64, pattern=CIDR_PATTERN, examples=["10.96.0.0/12"])


class StaticBand(BaseModel):
    first: str | None
    last: str | None
    size: int


class RangeRead(BaseModel):
    name: str
    cidr: str
    family: FamilyName
    size: int
    allocated: int
    free: int
    static_band: StaticBand
    created_at: datetime
    revision: int


class RangeList(BaseModel):
    items: list[RangeRead]


class AllocationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str = Field(min_length=1, max_length=253, examples=["default/my-svc"])
    ip: str | None = Field(
        default=None, max_length=64, pattern=ADDRESS_PATTERN, examples=["10.96.0.10"]
    )
    range: str | None = Field(default=None, min_length=1, max_length=63, pattern=TEXT_PATTERN)
    family: FamilyName | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

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


class AllocationRead(BaseModel):
    ip: str
    family: FamilyName
    range: str
    owner: str
    metadata: dict[str, Any]
    created_at: datetime
    revision: int


class AllocationList(BaseModel):
    items: list[AllocationRead]
    revision: int
    next_cursor: str | None


class Released(BaseModel):
    released: list[AllocationRead]


BandName = Literal["static", "dynamic"]


class Span(BaseModel):
    first: str | None
    last: str | None
    size: int


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


class OccupancyRead(BaseModel):
    """How a range is used: per band, per materialized block, and as a map of equal slices."""

    range: RangeRead
    revision: int
    lazy: bool = Field(description="blocks are created on first use; absent blocks are free")
    bands: list[BandUsage]
    blocks: list[BlockUsage]
    cells: list[CellUsage] | None = Field(
        description="the range cut into equal slices (only when asked for, eager ranges only)"
    )
