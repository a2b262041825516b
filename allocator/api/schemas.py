"""Request and response bodies of the HTTP contract (API.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from allocator.domain.metadata import check_metadata

FamilyName = Literal["IPv4", "IPv6"]


class RangeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63, examples=["default-ipv4"])
    cidr: str = Field(min_length=1, max_length=64, examples=["10.96.0.0/12"])


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
    ip: str | None = Field(default=None, max_length=64, examples=["10.96.0.10"])
    range: str | None = Field(default=None, min_length=1, max_length=63)
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
