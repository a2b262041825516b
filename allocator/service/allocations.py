"""Allocation use cases: allocate (dynamic or user-requested), release, read, list."""

from __future__ import annotations

import base64
import binascii
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import netaddr
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.domain.address import Family, family_of, parse_address
from allocator.domain.band import Band, BandKind
from allocator.domain.bitmap import is_set, next_free, with_bit
from allocator.domain.errors import (
    InvalidRequest,
    IPAlreadyAllocated,
    IPNotAllocated,
    IPNotInRange,
    NoRangeForFamily,
    OwnerHasAllocation,
    OwnerMismatch,
    RangeFull,
)
from allocator.domain.model import Allocation, Range
from allocator.domain.range import ServiceRange
from allocator.service import group_commit
from allocator.service.ranges import require
from allocator.service.unit_of_work import run
from allocator.store import allocations, bitmap, ranges
from allocator.store.allocations import Held
from allocator.store.bitmap import Block
from allocator.store.event_log import head_revision


@dataclass(frozen=True, slots=True)
class AllocationRequest:
    owner: str
    ip: netaddr.IPAddress | None = None
    range: str | None = None
    family: Family | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AllocationPage:
    items: list[Allocation]
    revision: int
    next_cursor: str | None


async def allocate(engine: AsyncEngine, request: AllocationRequest) -> tuple[Allocation, bool]:
    """Allocate an address to ``request.owner``; return it and whether it is new.

    An owner that already holds an address of the family gets it back unchanged (a retry), unless
    it asked for a different IP. Raises InvalidRequest (family contradicts ip or range),
    RangeNotFound, NoRangeForFamily, IPNotInRange, IPAlreadyAllocated (naming the holder),
    OwnerHasAllocation, RangeFull.

    Dynamic requests made concurrently in this process may share one transaction (group commit,
    see ``allocator.service.group_commit``); the answer to each is the same as if it ran alone.
    """
    return await group_commit.batcher(engine).allocate(request)


async def allocate_one(engine: AsyncEngine, request: AllocationRequest) -> tuple[Allocation, bool]:
    """``allocate`` in a transaction of its own."""

    async def work(connection: AsyncConnection) -> tuple[Allocation, bool]:
        named = await require(connection, request.range) if request.range else None
        family = request_family(request, named)
        held = await allocations.by_owner(connection, request.owner, family)
        if held is not None:
            if request.ip is None or request.ip == held.allocation.ip:
                return held.allocation, False
            raise OwnerHasAllocation(
                f"{request.owner!r} already holds {held.allocation.ip} in {family}",
                allocation=held.allocation.document(),
            )
        if request.ip is not None:
            return await _allocate_static(connection, request, family, named), True
        return await _allocate_dynamic(connection, request, family, named), True

    return await run(engine, work)


def request_family(request: AllocationRequest, named: Range | None) -> Family:
    """Return the family the request is for; raise InvalidRequest when its parts disagree."""
    ip_family = family_of(request.ip) if request.ip is not None else None
    range_family = named.geometry.family if named is not None else None
    family = request.family or ip_family or range_family or Family.IPV4
    # The family comes from the first of family, ip, range given; a later one that disagrees
    # is the bad field.
    source = "family" if request.family else f"ip {request.ip}"
    for given, part, what in (
        (ip_family, "ip", f"ip {request.ip}"),
        (range_family, "range", f"range {request.range}"),
    ):
        if given is not None and given != family:
            raise InvalidRequest(
                f"{what} is {given}, but {source} says {family}",
                field=part if not request.family else "family",
            )
    return family


async def _allocate_static(
    connection: AsyncConnection, request: AllocationRequest, family: Family, named: Range | None
) -> Allocation:
    ip = request.ip
    assert ip is not None
    target = named or await ranges.containing(connection, ip)
    if target is None:
        raise IPNotInRange(f"{ip} is in no range")
    offset = target.geometry.offset_of(ip)
    band = target.geometry.band_of(offset)
    block_no, bit = band.locate(offset)
    block = await bitmap.lock_block(
        connection, target.id, band, block_no, eager=target.geometry.eager
    )
    if is_set(block.bits, bit):
        holder = await allocations.by_ip(connection, ip)
        owner = holder.allocation.owner if holder else None
        raise IPAlreadyAllocated(f"{ip} is already allocated to {owner!r}", holder=owner)
    return await _record(connection, request, family, target, block, bit)


async def _allocate_dynamic(
    connection: AsyncConnection, request: AllocationRequest, family: Family, named: Range | None
) -> Allocation:
    candidates = [named] if named else await ranges.list_all(connection, family)
    if not candidates:
        raise no_range_for(family)
    # The static band is the last resort, so user-requested IPs in it rarely collide.
    for kind in (BandKind.DYNAMIC, BandKind.STATIC):
        for target in candidates:
            if target.free <= 0:
                continue
            band = target.geometry.band(kind)
            block = await bitmap.lock_free_block(
                connection, target.id, band, eager=target.geometry.eager
            )
            if block is None:
                continue
            bits = band.block_bits(block.block_no)
            bit = next_free(block.bits, bits, random.randrange(bits))
            if bit is None:  # counts said free but bits say full: repair will reconcile
                continue
            return await _record(connection, request, family, target, block, bit)
    where = f"range {named.name!r}" if named else f"any {family} range"
    raise RangeFull(f"no free address in {where}")


def no_range_for(family: Family) -> NoRangeForFamily:
    return NoRangeForFamily(f"there is no {family} range")


def draft(
    request: AllocationRequest, family: Family, target: Range, band: Band, block_no: int, bit: int
) -> Allocation:
    """Return the allocation of ``bit`` of a block for ``request``, not stored yet (revision 0)."""
    return Allocation(
        ip=target.geometry.address_at(band.offset(block_no, bit)),
        family=family,
        range=target.name,
        owner=request.owner,
        metadata=request.metadata,
        created_at=datetime.now(UTC),
        revision=0,
    )


async def _record(
    connection: AsyncConnection,
    request: AllocationRequest,
    family: Family,
    target: Range,
    block: Block,
    bit: int,
) -> Allocation:
    unstored = draft(request, family, target, block.band, block.block_no, bit)
    revision = await allocations.record_allocation(
        connection,
        range_id=target.id,
        band=block.band.kind,
        block_no=block.block_no,
        bits=with_bit(block.bits, bit, True),
        draft=unstored,
    )
    return replace(unstored, revision=revision)


Release = tuple[Allocation, int]
"""An allocation as it was when released, and the revision of its release."""


async def release(engine: AsyncEngine, ip: netaddr.IPAddress, owner: str | None = None) -> Release:
    """Release ``ip``; return the allocation as it was and the revision of the release.

    With ``owner``, refuse (OwnerMismatch) when someone else holds it: a late release must never
    free an address that was allocated again. Raises IPNotAllocated.
    """

    async def work(connection: AsyncConnection) -> Release:
        held = await allocations.by_ip(connection, ip, lock=True)
        if held is None:
            raise IPNotAllocated(f"{ip} is not allocated")
        if owner is not None and held.allocation.owner != owner:
            raise OwnerMismatch(
                f"{ip} is held by {held.allocation.owner!r}, not {owner!r}",
                holder=held.allocation.owner,
            )
        return held.allocation, await _release(connection, held)

    return await run(engine, work)


async def release_owner(engine: AsyncEngine, owner: str) -> list[Release]:
    """Release every allocation of ``owner`` (both families) in one transaction; return them
    with the revision of each release."""

    async def work(connection: AsyncConnection) -> list[Release]:
        held = await allocations.of_owner_locked(connection, owner)
        places = [_place(one) for one in held]
        # Every block and count this transaction changes is locked before the first head bump.
        await bitmap.lock_blocks(
            connection, [(h.range_id, b, n) for h, (b, n, _) in zip(held, places, strict=True)]
        )
        await ranges.lock_counts(connection, {one.range_id for one in held})
        return [
            (
                one.allocation,
                await allocations.record_release(
                    connection, one, band=band, block_no=block_no, bit=bit
                ),
            )
            for one, (band, block_no, bit) in zip(held, places, strict=True)
        ]

    return await run(engine, work)


async def _release(connection: AsyncConnection, held: Held) -> int:
    band, block_no, bit = _place(held)
    return await allocations.record_release(connection, held, band=band, block_no=block_no, bit=bit)


def _place(held: Held) -> tuple[BandKind, int, int]:
    """Return the band, block and bit of a held address."""
    geometry = ServiceRange.of(held.network, check_limits=False)
    offset = geometry.offset_of(held.allocation.ip)
    band = geometry.band_of(offset)
    block_no, bit = band.locate(offset)
    return band.kind, block_no, bit


async def get_allocation(engine: AsyncEngine, ip: netaddr.IPAddress) -> Allocation:
    """Return the allocation of ``ip``; raise IPNotAllocated."""

    async def work(connection: AsyncConnection) -> Allocation:
        held = await allocations.by_ip(connection, ip)
        if held is None:
            raise IPNotAllocated(f"{ip} is not allocated")
        return held.allocation

    return await run(engine, work, read_only=True)


async def list_allocations(
    engine: AsyncEngine,
    *,
    range_name: str | None = None,
    owner: str | None = None,
    family: Family | None = None,
    limit: int = 500,
    cursor: str | None = None,
) -> AllocationPage:
    """Return one page of allocations in address order, read at one revision.

    Raises RangeNotFound for an unknown ``range_name``, InvalidRequest for a malformed cursor.
    """
    after = decode_cursor(cursor) if cursor else None

    async def work(connection: AsyncConnection) -> AllocationPage:
        range_id = (await require(connection, range_name)).id if range_name else None
        items = await allocations.page(
            connection, range_id=range_id, owner=owner, family=family, after=after, limit=limit + 1
        )
        revision = await head_revision(connection)
        more = len(items) > limit
        items = items[:limit]
        return AllocationPage(items, revision, encode_cursor(items[-1].ip) if more else None)

    return await run(engine, work, read_only=True)


def encode_cursor(ip: netaddr.IPAddress) -> str:
    return base64.urlsafe_b64encode(str(ip).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> netaddr.IPAddress:
    """Return the address a cursor resumes after; raise InvalidRequest for a malformed one."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest(f"malformed cursor {cursor!r}", field="cursor") from None
    return parse_address(text, field="cursor")
