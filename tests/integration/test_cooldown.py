"""Release cool-down through the service layer: who may take a cooling address, counts, and the
end of cool-downs by concurrent sweeps."""

import asyncio
from datetime import UTC, datetime, timedelta

import netaddr
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.domain.errors import InvalidRequest, IPCoolingDown, IPNotAllocated, RangeFull
from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, Allocator
from allocator.service.cooldown import end_due
from tests.integration.consistency import assert_consistent

IP = netaddr.IPAddress


async def counts(engine: AsyncEngine, name: str) -> tuple[int, int, int]:
    found = await ranges.get_range(engine, name)
    return found.allocated, found.cooling, found.free


async def end_now(engine: AsyncEngine) -> None:
    """As if every cool-down were over."""
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE cooling_address SET available_at = now() - interval '1 second'")
        )


async def test_a_released_address_cools_down_for_everyone_but_its_releasing_owner(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "cool", "10.0.0.0/24", release_cooldown_seconds=3600)
    held, _ = await allocator.allocate(AllocationRequest(owner="old", ip=IP("10.0.0.50")))
    released_at = datetime.now(UTC)
    await allocator.release(held.ip, "old")
    assert await counts(engine, "cool") == (0, 1, 253), "cooling is neither allocated nor free"
    with pytest.raises(IPCoolingDown) as refused:
        await allocator.allocate(AllocationRequest(owner="new", ip=held.ip))
    available_at = datetime.fromisoformat(refused.value.extensions["available_at"])
    assert timedelta(seconds=3599) < available_at - released_at < timedelta(seconds=3601)
    assert refused.value.extensions["released_by"] == "old"
    with pytest.raises(IPNotAllocated):
        await allocator.release(held.ip)
    back, created = await allocator.allocate(AllocationRequest(owner="old", ip=held.ip))
    assert (created, back.ip) == (True, held.ip), "a Service re-created with its old IP"
    assert await counts(engine, "cool") == (1, 0, 253)
    await assert_consistent(engine)


async def test_dynamic_allocation_never_hands_out_a_cooling_address(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "tiny", "10.0.0.0/28", release_cooldown_seconds=3600)
    taken = [(await allocator.allocate(AllocationRequest(owner=f"s{n}")))[0] for n in range(14)]
    for allocation in taken[:5]:
        await allocator.release(allocation.ip)
    assert await counts(engine, "tiny") == (9, 5, 0)
    with pytest.raises(RangeFull):
        await allocator.allocate(AllocationRequest(owner="newcomer"))
    with pytest.raises(RangeFull):
        await allocator.allocate(AllocationRequest(owner="newcomer", range="tiny"))
    await end_now(engine)
    assert await end_due(engine) == 5
    assert await counts(engine, "tiny") == (9, 0, 5)
    again = {(await allocator.allocate(AllocationRequest(owner=f"n{n}")))[0].ip for n in range(5)}
    assert again == {a.ip for a in taken[:5]}, "free again for everyone after the cool-down"
    await assert_consistent(engine)


async def test_an_address_whose_cool_down_ended_is_anyones_before_the_sweep(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "cool", "10.0.0.0/24", release_cooldown_seconds=60)
    await allocator.allocate(AllocationRequest(owner="old", ip=IP("10.0.0.7")))
    await allocator.release_owner("old")
    await end_now(engine)
    taken, created = await allocator.allocate(AllocationRequest(owner="new", ip=IP("10.0.0.7")))
    assert (taken.ip, created) == (IP("10.0.0.7"), True)
    assert await counts(engine, "cool") == (1, 0, 253)
    assert await end_due(engine) == 0, "nothing left to free"
    await assert_consistent(engine)


async def test_a_change_of_the_cool_down_applies_to_later_releases(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "r", "10.0.0.0/24")
    first, _ = await allocator.allocate(AllocationRequest(owner="a"))
    second, _ = await allocator.allocate(AllocationRequest(owner="b"))
    await allocator.release(first.ip)
    assert await counts(engine, "r") == (1, 0, 253), "no cool-down by default"
    await ranges.change_range(engine, "r", ranges.RangeChange(release_cooldown_seconds=600))
    await allocator.release(second.ip)
    assert await counts(engine, "r") == (0, 1, 253)
    await ranges.change_range(engine, "r", ranges.RangeChange(release_cooldown_seconds=0))
    with pytest.raises(IPCoolingDown):
        await allocator.allocate(AllocationRequest(owner="c", ip=second.ip))
    await assert_consistent(engine)


@pytest.mark.parametrize("seconds", [-1, 86_401, True])
async def test_cool_down_out_of_bounds(engine: AsyncEngine, seconds: int) -> None:
    with pytest.raises(InvalidRequest):
        await ranges.create_range(engine, "r", "10.0.0.0/24", release_cooldown_seconds=seconds)


async def test_concurrent_sweeps_free_each_address_once_while_others_allocate(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "v4", "10.0.0.0/22", release_cooldown_seconds=3600)
    await ranges.create_range(engine, "v6", "fd00::/64", release_cooldown_seconds=3600)
    for n in range(300):
        await allocator.allocate(AllocationRequest(owner=f"o{n}", range="v4" if n % 2 else "v6"))
        await allocator.release_owner(f"o{n}")
    await end_now(engine)

    async def allocate(n: int) -> None:
        await allocator.allocate(AllocationRequest(owner=f"late{n}", range="v4"))

    freed, *_ = await asyncio.gather(
        asyncio.gather(*(end_due(engine) for _ in range(6))),
        *(allocate(n) for n in range(40)),
    )
    # A sweep skips blocks others hold: what they skipped is left for the next round.
    assert sum(freed) + await end_due(engine) == 300, "every address freed once"
    assert await counts(engine, "v4") == (40, 0, 1022 - 40)
    assert (await ranges.get_range(engine, "v6")).cooling == 0
    await assert_consistent(engine)
