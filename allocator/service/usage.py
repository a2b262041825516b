"""What the gauges of ``/metrics`` report: every range's counts and the head revision, read in
one snapshot from the database, so every replica reports the same values."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.domain.model import Range
from allocator.service.unit_of_work import run
from allocator.store import ranges
from allocator.store.event_log import head_revision


@dataclass(frozen=True, slots=True)
class Usage:
    ranges: list[Range]
    revision: int


async def usage(engine: AsyncEngine) -> Usage:
    """Return every range (with its allocated count) and the head revision, at one revision.

    Raises Unavailable when the database cannot answer.
    """

    async def work(connection: AsyncConnection) -> Usage:
        return Usage(await ranges.list_all(connection), await head_revision(connection))

    return await run(engine, work, read_only=True)
