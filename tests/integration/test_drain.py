"""Draining a range: no new allocation lands in it, while what it holds keeps working."""

import asyncio
import contextlib

import netaddr
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.domain.address import Family
from allocator.domain.errors import BatchFailed, RangeFull, RangeNotAllocatable
from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, Allocator
from tests.integration.consistency import assert_consistent

IP = netaddr.IPAddress


async def drain(engine: AsyncEngine, name: str, allocatable: bool = False) -> None:
    await ranges.change_range(engine, name, ranges.RangeChange(allocatable=allocatable))


async def test_a_drained_range_serves_nothing_new_and_keeps_what_it_holds(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    # "a-old" sorts first: a request naming no range would take it while it has room.
    await ranges.create_range(engine, "a-old", "10.60.0.0/24")
    await ranges.create_range(engine, "b-new", "10.61.0.0/24")
    kept, _ = await allocator.allocate(AllocationRequest(owner="kept", range="a-old"))
    static, _ = await allocator.allocate(AllocationRequest(owner="dns", ip=IP("10.60.0.10")))
    await drain(engine, "a-old")
    assert (await ranges.get_range(engine, "a-old")).document()["allocatable"] is False

    moved, created = await allocator.allocate(AllocationRequest(owner="new"))
    assert created and moved.range == "b-new", "dynamic allocation passes the drained range by"
    with pytest.raises(RangeNotAllocatable):
        await allocator.allocate(AllocationRequest(owner="named", range="a-old"))
    with pytest.raises(RangeNotAllocatable):
        await allocator.allocate(AllocationRequest(owner="static", ip=IP("10.60.0.11")))
    with pytest.raises(BatchFailed) as batch:
        await allocator.allocate_many(
            [
                AllocationRequest(owner="x", family=Family.IPV6),
                AllocationRequest(owner="y", range="a-old"),
            ]
        )
    assert [type(e) for _, e in batch.value.refusals][-1] is RangeNotAllocatable

    for request in (
        AllocationRequest(owner="kept"),
        AllocationRequest(owner="kept", range="a-old"),
        AllocationRequest(owner="dns", ip=IP("10.60.0.10")),
    ):
        again, created = await allocator.allocate(request)
        assert not created and again.ip in {kept.ip, static.ip}, "a retry still answers"
    released, _ = await allocator.release(kept.ip, "kept")
    assert released.ip == kept.ip
    assert [a.ip for a, _ in await allocator.release_owner("dns")] == [static.ip]
    assert (await ranges.get_range(engine, "a-old")).allocated == 0
    await ranges.delete_range(engine, "a-old")  # drained and empty: it can go

    await drain(engine, "b-new")
    with pytest.raises(RangeFull):
        await allocator.allocate(AllocationRequest(owner="nowhere"))
    await drain(engine, "b-new", allocatable=True)
    back, created = await allocator.allocate(AllocationRequest(owner="nowhere"))
    assert created and back.range == "b-new"
    await assert_consistent(engine)


async def test_once_a_drain_has_answered_no_allocation_lands_in_the_range(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    # Large enough that the clients do not fill them before the drain, however fast they are.
    await ranges.create_range(engine, "a", "10.62.0.0/18")
    await ranges.create_range(engine, "b", "10.63.0.0/18")
    drained_at: int | None = None
    stop = asyncio.Event()

    async def client(n: int) -> None:
        attempt = 0
        while not stop.is_set():
            attempt += 1
            request = AllocationRequest(owner=f"c{n}-{attempt}", range="a" if n % 2 else None)
            with contextlib.suppress(RangeNotAllocatable):
                await allocator.allocate(request)

    async def drainer() -> None:
        nonlocal drained_at
        await asyncio.sleep(0.3)
        await drain(engine, "a")
        async with engine.connect() as connection:
            drained_at = (
                await connection.execute(
                    text("SELECT max(revision) FROM event WHERE type = 'RANGE_UPDATED'")
                )
            ).scalar_one()
        await asyncio.sleep(0.3)
        stop.set()

    await asyncio.gather(drainer(), *(client(n) for n in range(16)))
    async with engine.connect() as connection:
        latest, later = (
            await connection.execute(
                text(
                    "SELECT max(a.revision), count(*) FILTER (WHERE a.revision > :at)"
                    " FROM allocation a JOIN ip_range r ON r.id = a.range_id"
                    " WHERE r.name = 'a'"
                ),
                {"at": drained_at},
            )
        ).one()
        elsewhere = (
            await connection.execute(
                text(
                    "SELECT count(*) FROM allocation a JOIN ip_range r ON r.id = a.range_id"
                    " WHERE r.name = 'b' AND a.revision > :at"
                ),
                {"at": drained_at},
            )
        ).scalar_one()
    assert latest is not None and latest < drained_at
    assert later == 0, "nothing landed in the drained range after its drain"
    assert elsewhere > 0, "allocations went on meanwhile, elsewhere"
    await assert_consistent(engine)
