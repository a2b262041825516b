"""Range use cases: create, read, list, change, delete."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.domain.address import format_network, parse_network
from allocator.domain.errors import (
    AllocationsOutsideRange,
    InvalidRequest,
    RangeExists,
    RangeNotEmpty,
    RangeNotFound,
    RangeOverlaps,
)
from allocator.domain.model import Range
from allocator.domain.range import ServiceRange, validate_name, validate_release_cooldown
from allocator.service.unit_of_work import run
from allocator.store import bitmap, ranges


@dataclass(frozen=True, slots=True)
class RangeChange:
    """A change of a range, as a merge patch says it: the fields that are not None change."""

    release_cooldown_seconds: int | None = None
    cidr: str | None = None
    allocatable: bool | None = None

    def given(self) -> dict[str, Any]:
        return {
            f.name: value
            for f in dataclasses.fields(self)
            if (value := getattr(self, f.name)) is not None
        }


async def create_range(
    engine: AsyncEngine, name: str, cidr: str, *, release_cooldown_seconds: int = 0
) -> Range:
    """Create a range with an empty bitmap.

    Raises InvalidRequest (bad name or CIDR, prefix length out of limits, cool-down out of
    bounds), RangeExists, RangeOverlaps (naming the range it overlaps).
    """
    validate_name(name)
    validate_release_cooldown(release_cooldown_seconds)
    geometry = ServiceRange.of(parse_network(cidr))

    async def work(connection: AsyncConnection) -> Range:
        if await ranges.get(connection, name) is not None:
            raise RangeExists(f"a range named {name!r} already exists")
        other = await ranges.overlapping(connection, geometry)
        if other is not None:
            raise RangeOverlaps(
                f"{geometry.cidr} overlaps range {other!r}", conflicting_range=other
            )
        return await ranges.add(
            connection,
            name,
            geometry,
            datetime.now(UTC),
            release_cooldown_seconds=release_cooldown_seconds,
        )

    return await run(engine, work)


OUTSIDE_EXAMPLES = 10
"""Addresses a refused shrink names at most."""


async def change_range(engine: AsyncEngine, name: str, change: RangeChange) -> str:
    """Apply ``change`` to the range ``name`` in one transaction at a new revision
    (RANGE_UPDATED); return the Range object after it as JSON. A change that changes nothing
    takes no revision.

    The change holds the range's lock: writes in flight in the range end first, and those that
    arrive meanwhile wait and then see the range as changed. A resize keeps every allocation and
    cooling address and rebuilds the bitmap for the new geometry; a drained range
    (``allocatable`` false) serves no new allocation. A new cool-down applies to later releases.

    Raises RangeNotFound; InvalidRequest (a CIDR of another family, out of limits, or neither
    containing nor inside the range's); RangeOverlaps (naming the other range);
    AllocationsOutsideRange (a shrink that would leave addresses out, with their count and
    examples).
    """
    wanted = change.given()
    if change.release_cooldown_seconds is not None:
        validate_release_cooldown(change.release_cooldown_seconds)
    network = parse_network(change.cidr) if change.cidr is not None else None
    if network is not None:
        wanted["cidr"] = format_network(network)

    async def work(connection: AsyncConnection) -> str:
        await ranges.lock(connection, (await require(connection, name)).id)
        stored = await require(connection, name)  # as it is under the lock
        changes = {f: v for f, v in wanted.items() if getattr(stored, f) != v}
        geometry = None
        if network is not None and "cidr" in changes:
            geometry = stored.geometry.resized(network)
            await _check_resize(connection, stored, geometry)
        if not changes:
            return orjson.dumps(stored.document()).decode()
        return await ranges.update(connection, stored, changes, geometry)

    return await run(engine, work)


async def _check_resize(connection: AsyncConnection, stored: Range, geometry: ServiceRange) -> None:
    """Raise RangeOverlaps or AllocationsOutsideRange when ``stored`` cannot become
    ``geometry``."""
    other = await ranges.overlapping(connection, geometry, other_than=stored.id)
    if other is not None:
        raise RangeOverlaps(f"{geometry.cidr} overlaps range {other!r}", conflicting_range=other)
    if geometry.size < stored.geometry.size:
        count, examples = await ranges.outside(connection, stored, geometry, OUTSIDE_EXAMPLES)
        if count:
            raise AllocationsOutsideRange(
                f"{count} allocated or cooling addresses of range {stored.name!r} lie outside"
                f" the usable addresses of {geometry.cidr}, such as {examples[0]}",
                count=count,
                examples=examples,
            )


async def get_range(engine: AsyncEngine, name: str) -> Range:
    """Return the range ``name``; raise RangeNotFound."""

    async def work(connection: AsyncConnection) -> Range:
        return await require(connection, name)

    return await run(engine, work, read_only=True)


async def list_ranges(engine: AsyncEngine) -> list[Range]:
    """Return every range, ordered by name."""
    return await run(engine, ranges.list_all, read_only=True)


async def delete_range(engine: AsyncEngine, name: str) -> int:
    """Delete an empty range and its bitmap; return the revision.

    Raises RangeNotFound, RangeNotEmpty (with the number of allocations still held).
    """

    async def work(connection: AsyncConnection) -> int:
        # Refused at once when visibly in use, without waiting for the writes in a busy range;
        # checked again under the lock.
        stored = _empty(await require(connection, name))
        await ranges.lock(connection, stored.id)
        await bitmap.drop_blocks(connection, stored.id)
        return await ranges.remove(connection, _empty(await require(connection, name, lock=True)))

    return await run(engine, work)


def _empty(stored: Range) -> Range:
    """Return ``stored``; raise RangeNotEmpty while it holds allocations."""
    if stored.allocated:
        raise RangeNotEmpty(
            f"range {stored.name!r} still holds {stored.allocated} allocations",
            allocated=stored.allocated,
        )
    return stored


async def require(connection: AsyncConnection, name: str, *, lock: bool = False) -> Range:
    """Return the range ``name``; raise RangeNotFound."""
    stored = await ranges.get(connection, name, lock=lock)
    if stored is None:
        raise RangeNotFound(f"no range named {name!r}")
    return stored


def parse_default_ranges(spec: str) -> list[tuple[str, str]]:
    """Return the ``(name, cidr)`` pairs of ``name=cidr,name=cidr``; raise InvalidRequest."""
    pairs = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, equals, cidr = item.partition("=")
        if not equals:
            raise InvalidRequest(
                f"default range {item!r} must be written name=cidr", field="default_ranges"
            )
        pairs.append((name.strip(), cidr.strip()))
    return pairs


async def ensure_ranges(engine: AsyncEngine, pairs: list[tuple[str, str]]) -> list[Range]:
    """Create each named range that does not exist yet; return those created.

    A range that exists under the same name is left as it is, whatever its CIDR.
    """
    created = []
    for name, cidr in pairs:
        try:
            created.append(await create_range(engine, name, cidr))
        except RangeExists:
            continue
    return created
