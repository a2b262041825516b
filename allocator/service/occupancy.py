"""The occupancy of a range: how many addresses each band and each block holds, and optionally a
map of equal slices of the range, all read at one revision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.domain.band import BandKind
from allocator.domain.model import Range
from allocator.domain.occupancy import Cell, band_bitmap, cells
from allocator.service.ranges import require
from allocator.service.unit_of_work import run
from allocator.store import occupancy
from allocator.store.event_log import head_revision
from allocator.store.occupancy import StoredBlock

MAX_CELLS = 4096


@dataclass(frozen=True, slots=True)
class Occupancy:
    """A range, its materialized blocks, the optional slice map, and the revision read at."""

    range: Range
    revision: int
    blocks: list[StoredBlock]
    cells: list[Cell] | None

    def band_used(self, kind: BandKind) -> int:
        """Return the allocated addresses of a band, from its blocks' free counts."""
        band = self.range.geometry.band(kind)
        return sum(band.block_bits(b.block_no) - b.free for b in self.blocks if b.band is kind)

    def document(self) -> dict[str, Any]:
        """Return the Occupancy object of ``GET /v1/ranges/{name}/occupancy``."""
        geometry = self.range.geometry

        def span(first: int, size: int) -> dict[str, Any]:
            if size == 0:
                return {"first": None, "last": None, "size": 0}
            last = first + size - 1
            return {
                "first": str(geometry.address_at(first)),
                "last": str(geometry.address_at(last)),
                "size": size,
            }

        bands = []
        for band in geometry.bands:
            bands.append(
                {
                    "band": band.kind.name.lower(),
                    **span(band.first, band.size),
                    "used": self.band_used(band.kind),
                    "blocks": band.block_count,
                    "materialized_blocks": sum(1 for b in self.blocks if b.band is band.kind),
                }
            )
        blocks = []
        for block in self.blocks:
            band = geometry.band(block.band)
            size = band.block_bits(block.block_no)
            blocks.append(
                {
                    "band": block.band.name.lower(),
                    "block_no": block.block_no,
                    **span(band.offset(block.block_no, 0), size),
                    "used": size - block.free,
                }
            )
        return {
            "range": self.range.document(),
            "revision": self.revision,
            "lazy": not geometry.eager,
            "bands": bands,
            "blocks": blocks,
            "cells": None
            if self.cells is None
            else [{**span(c.first, c.size), "used": c.used} for c in self.cells],
        }


async def range_occupancy(engine: AsyncEngine, name: str, *, cell_count: int = 0) -> Occupancy:
    """Return the occupancy of range ``name``, with a map of ``cell_count`` slices when it is
    positive and the range is eager (a lazy range's map would be empty but for a few dots: its
    materialized blocks are the summary). Raises RangeNotFound."""

    async def work(connection: AsyncConnection) -> Occupancy:
        stored = await require(connection, name)
        geometry = stored.geometry
        drawn = cell_count > 0 and geometry.eager
        blocks = await occupancy.blocks(connection, stored.id, with_bits=drawn)
        revision = await head_revision(connection)
        slices = None
        if drawn:
            static, dynamic = (
                band_bitmap(
                    band,
                    ((b.block_no, b.bits or b"") for b in blocks if b.band is band.kind),
                )
                for band in geometry.bands
            )
            slices = cells(geometry, (static, dynamic), min(cell_count, MAX_CELLS))
        return Occupancy(stored, revision, blocks, slices)

    return await run(engine, work, read_only=True)
