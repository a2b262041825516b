"""Concurrent clients, each with its own connection and transaction, against real Postgres."""

import asyncio
import contextlib
import random

import netaddr
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.domain.address import Family
from allocator.domain.errors import (
    IPAlreadyAllocated,
    IPNotAllocated,
    IPNotInRange,
    OwnerHasAllocation,
    RangeExists,
    RangeFull,
    RangeNotEmpty,
    RangeNotFound,
    RangeOverlaps,
)
from allocator.domain.model import Allocation
from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, Allocator
from tests.integration.consistency import assert_consistent

CLIENTS = 24


async def test_parallel_clients_fill_a_range_exactly_once(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    r = await ranges.create_range(engine, "small", "10.0.0.0/27")
    won: list[Allocation] = []
    full = 0

    async def client(n: int) -> None:
        nonlocal full
        for attempt in range(100):
            try:
                won.append(
                    (await allocator.allocate(AllocationRequest(owner=f"c{n}-{attempt}")))[0]
                )
            except RangeFull:
                full += 1
                return

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    assert len(won) == r.geometry.size == 30
    assert len({a.ip for a in won}) == 30, "no address handed out twice"
    assert full == CLIENTS, "every client ends with range-full"
    assert await assert_consistent(engine) == {a.ip for a in won}


async def test_static_and_dynamic_requests_for_overlapping_addresses(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    r = await ranges.create_range(engine, "small", "10.0.0.0/26")  # 62 usable, 16 static
    acknowledged: dict[netaddr.IPAddress, str] = {}
    refused = 0

    async def client(n: int) -> None:
        nonlocal refused
        rng = random.Random(n)
        for attempt in range(12):
            owner = f"c{n}-{attempt}"
            ip = (
                r.geometry.address_at(rng.randint(1, r.geometry.size))
                if rng.random() < 0.5
                else None
            )
            try:
                got, created = await allocator.allocate(AllocationRequest(owner=owner, ip=ip))
            except (IPAlreadyAllocated, RangeFull):
                refused += 1
                continue
            assert created and got.ip not in acknowledged, f"{got.ip} acknowledged twice"
            acknowledged[got.ip] = owner

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    assert len(acknowledged) + refused == CLIENTS * 12
    assert await assert_consistent(engine) == set(acknowledged)


async def test_concurrent_writes_take_dense_revisions(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/16")
    writes = 1  # the range

    async def client(n: int) -> int:
        done = 0
        for attempt in range(10):
            got, _ = await allocator.allocate(AllocationRequest(owner=f"c{n}-{attempt}"))
            done += 1
            if attempt % 2:
                await allocator.release(got.ip)
                done += 1
        return done

    writes += sum(await asyncio.gather(*(client(n) for n in range(CLIENTS))))
    async with engine.connect() as connection:
        revisions = (
            (await connection.execute(text("SELECT revision FROM event ORDER BY revision")))
            .scalars()
            .all()
        )
        stamped = (
            await connection.execute(
                text(
                    "SELECT count(*) FROM allocation a JOIN event e ON e.revision = a.revision"
                    " WHERE e.type = 'ALLOCATED' AND e.payload->'allocation'->>'ip' = host(a.ip)"
                )
            )
        ).scalar_one()
    assert revisions == list(range(1, writes + 1)), "exactly 1..N: no gap, no repeat"
    assert stamped == CLIENTS * 5, "each allocation carries the revision of its own event"
    await assert_consistent(engine)


async def test_one_owner_racing_itself_gets_one_address(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/16")
    results = await asyncio.gather(
        *(allocator.allocate(AllocationRequest(owner="same")) for _ in range(CLIENTS))
    )
    assert sum(created for _, created in results) == 1
    assert len({a.ip for a, _ in results}) == 1
    await assert_consistent(engine)


async def test_racing_releases_free_an_address_once(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/16")
    held, _ = await allocator.allocate(AllocationRequest(owner="a"))
    outcomes = await asyncio.gather(
        *(allocator.release(held.ip) for _ in range(CLIENTS)), return_exceptions=True
    )
    assert [o for o in outcomes if isinstance(o, tuple)] == [(held, held.revision + 1)]
    assert all(isinstance(o, tuple | IPNotAllocated) for o in outcomes)
    await assert_consistent(engine)


async def test_overlapping_range_creations_race_to_one_winner(engine: AsyncEngine) -> None:
    cidrs = [
        "10.96.0.0/12",
        "10.96.0.0/16",
        "10.96.0.0/20",
        "10.96.0.0/24",
    ] * 4  # pairwise overlapping
    outcomes = await asyncio.gather(
        *(ranges.create_range(engine, f"r{n}", cidr) for n, cidr in enumerate(cidrs)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(winners) == 1
    assert all(
        isinstance(o, RangeOverlaps | RangeExists) for o in outcomes if isinstance(o, Exception)
    ), outcomes
    await assert_consistent(engine)


async def test_static_requests_by_one_owner_for_different_ips(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    r = await ranges.create_range(engine, "default", "10.96.0.0/24")
    ips = [r.geometry.address_at(n) for n in range(1, CLIENTS + 1)]
    outcomes = await asyncio.gather(
        *(allocator.allocate(AllocationRequest(owner="same", ip=ip)) for ip in ips),
        return_exceptions=True,
    )
    assert sum(isinstance(o, tuple) for o in outcomes) == 1
    assert all(isinstance(o, OwnerHasAllocation) for o in outcomes if not isinstance(o, tuple))
    await assert_consistent(engine)


async def deadlocks(engine: AsyncEngine) -> int:
    await asyncio.sleep(1.5)  # backends flush their statistics at most once a second
    async with engine.connect() as connection:
        query = text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int((await connection.execute(query)).scalar_one())


async def test_dual_stack_owners_release_without_deadlocks(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "v4", "10.0.0.0/28")
    await ranges.create_range(engine, "v6", "fd00::/124")
    before = await deadlocks(engine)

    async def client(n: int) -> None:
        for attempt in range(6):
            owner = f"c{n}-{attempt}"
            for family in (Family.IPV4, Family.IPV6):
                with contextlib.suppress(RangeFull):
                    await allocator.allocate(AllocationRequest(owner=owner, family=family))
            await allocator.release_owner(owner)

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    assert await deadlocks(engine) == before, "locks are always taken block, range, head"
    assert await assert_consistent(engine) == set()


@pytest.mark.parametrize("cidr", ["10.0.0.0/24", "fd00:1::/64"])
async def test_deleting_a_range_races_user_requested_ips_cleanly(
    engine: AsyncEngine, cidr: str, allocator: Allocator
) -> None:
    for round_ in range(6):
        r = await ranges.create_range(engine, f"r{round_}", cidr)
        ip = r.geometry.address_at(r.geometry.static_band.size + 5)
        outcomes = await asyncio.gather(
            ranges.delete_range(engine, r.name),
            allocator.allocate(AllocationRequest(owner=f"o{round_}", ip=ip)),
            return_exceptions=True,
        )
        deleted, allocated = outcomes
        if isinstance(deleted, Exception):
            assert isinstance(deleted, RangeNotEmpty), deleted
            assert isinstance(allocated, tuple), allocated
            await allocator.release(ip)
            await ranges.delete_range(engine, r.name)
        else:
            assert isinstance(allocated, tuple | RangeNotFound | IPNotInRange), allocated
            if isinstance(allocated, tuple):  # allocated first: then the delete must have failed
                raise AssertionError("a range was deleted while holding an allocation")
    await assert_consistent(engine)
