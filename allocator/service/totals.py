"""The totals of every range (its allocated counts) and the head revision, read in one snapshot:
what the gauges of ``/metrics`` report, the same on every replica. One range's occupancy by band
and block is ``allocator.service.occupancy``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.domain.model import Range
from allocator.service.unit_of_work import run
from allocator.store import ranges
from allocator.store.event_log import head_revision


@dataclass(frozen=True, slots=True)
class Totals:
    ranges: list[Range]
    revision: int


async def totals(engine: AsyncEngine) -> Totals:
    """Return every range (with its allocated count) and the head revision, at one revision.

    Raises Unavailable when the database cannot answer.
    """

    async def work(connection: AsyncConnection) -> Totals:
        return Totals(await ranges.list_all(connection), await head_revision(connection))

    return await run(engine, work, read_only=True)
