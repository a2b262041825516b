"""The API objects, as the server sends them (docs/api.md)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Span(TypedDict):
    """Consecutive usable addresses; ``first`` and ``last`` are None when ``size`` is 0."""

    first: str | None
    last: str | None
    size: int


class Range(TypedDict):
    name: str
    cidr: str
    family: str
    size: int
    allocated: int
    cooling: int
    free: int
    static_band: Span
    release_cooldown_seconds: int
    allocatable: bool
    created_at: str
    revision: int


class Allocation(TypedDict):
    ip: str
    family: str
    range: str
    owner: str
    metadata: dict[str, Any]
    created_at: str
    revision: int


class AllocationPage(TypedDict):
    items: list[Allocation]
    revision: int
    next_cursor: str | None


class BatchResult(TypedDict):
    status: int
    allocation: NotRequired[Allocation]
    problem: NotRequired[dict[str, Any]]


class BatchResults(TypedDict):
    results: list[BatchResult]
    revision: int


class Released(TypedDict):
    released: list[Allocation]


class BandUsage(Span):
    band: str
    used: int
    blocks: int
    materialized_blocks: int


class BlockUsage(Span):
    band: str
    block_no: int
    used: int


class CellUsage(Span):
    used: int


class Occupancy(TypedDict):
    range: Range
    revision: int
    lazy: bool
    bands: list[BandUsage]
    blocks: list[BlockUsage]
    cells: list[CellUsage] | None
