"""Allocation and release through the service layer, against real Postgres."""

from dataclasses import dataclass
from typing import Any

import netaddr
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.domain.address import Family
from allocator.domain.band import BandKind
from allocator.domain.errors import (
    InvalidRequest,
    IPAlreadyAllocated,
    IPNotAllocated,
    IPNotInRange,
    NoRangeForFamily,
    OwnerHasAllocation,
    OwnerMismatch,
    RangeFull,
    RangeNotEmpty,
)
from allocator.domain.model import Allocation
from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, Allocator
from allocator.service.reader import Reader

IP = netaddr.IPAddress


@dataclass(frozen=True)
class Page:
    items: list[Allocation]
    revision: int
    next_cursor: str | None


async def list_allocations(reader: Reader, **filters: Any) -> Page:
    """The API's page, read back as allocations."""
    page = orjson.loads(await reader.allocations(**filters))
    return Page(
        [Allocation.of_document(d) for d in page["items"]], page["revision"], page["next_cursor"]
    )


async def test_dynamic_band_first_then_static_band_then_full(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    r = await ranges.create_range(engine, "small", "10.0.0.0/27")  # 30 usable, static band 16
    taken = []
    for n in range(30):
        allocation, created = await allocator.allocate(AllocationRequest(owner=f"svc-{n}"))
        assert created
        taken.append(r.geometry.offset_of(allocation.ip))
    assert sorted(taken[:14]) == list(range(17, 31)), "the dynamic band is used first"
    assert sorted(taken[14:]) == list(range(1, 17)), "then the static band"
    with pytest.raises(RangeFull):
        await allocator.allocate(AllocationRequest(owner="one-too-many"))
    assert (await ranges.get_range(engine, "small")).allocated == 30


async def test_user_requested_ip_collision_names_the_holder(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/16")
    first, created = await allocator.allocate(AllocationRequest(owner="a", ip=IP("10.96.0.10")))
    assert created
    assert first.ip == IP("10.96.0.10")
    assert first.revision == 2
    with pytest.raises(IPAlreadyAllocated) as refused:
        await allocator.allocate(AllocationRequest(owner="b", ip=IP("10.96.0.10")))
    assert refused.value.extensions["holder"] == "a"


async def test_retries_by_the_same_owner_are_idempotent(
    engine: AsyncEngine, allocator: Allocator, reader: Reader
) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/16")
    first, _ = await allocator.allocate(AllocationRequest(owner="a", metadata={"k": 1}))
    again, created = await allocator.allocate(AllocationRequest(owner="a"))
    assert (again, created) == (first, False)
    same_ip, created = await allocator.allocate(AllocationRequest(owner="a", ip=first.ip))
    assert (same_ip, created) == (first, False)
    with pytest.raises(OwnerHasAllocation) as refused:
        await allocator.allocate(AllocationRequest(owner="a", ip=IP("10.96.200.1")))
    assert refused.value.extensions["allocation"]["ip"] == str(first.ip)
    page = await list_allocations(reader)
    assert page.revision == 2, "a retry takes no revision"


async def test_one_allocation_per_owner_and_family(
    engine: AsyncEngine, allocator: Allocator, reader: Reader
) -> None:
    await ranges.create_range(engine, "v4", "10.96.0.0/16")
    await ranges.create_range(engine, "v6", "fd00::/112")
    v4, _ = await allocator.allocate(AllocationRequest(owner="a"))
    v6, _ = await allocator.allocate(AllocationRequest(owner="a", family=Family.IPV6))
    assert (v4.family, v6.family) == (Family.IPV4, Family.IPV6)
    assert v6.ip in netaddr.IPNetwork("fd00::/112")
    released = await allocator.release_owner("a")
    assert {a.ip for a, _ in released} == {v4.ip, v6.ip}
    assert sorted(revision for _, revision in released) == [5, 6], "one revision per release"
    assert (await list_allocations(reader)).items == []
    assert await allocator.release_owner("a") == []


async def test_family_resolution_and_contradictions(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "v6", "fd00::/112")
    with pytest.raises(NoRangeForFamily):
        await allocator.allocate(AllocationRequest(owner="a"))  # IPv4 by default
    by_range, _ = await allocator.allocate(AllocationRequest(owner="b", range="v6"))
    assert by_range.family is Family.IPV6
    with pytest.raises(InvalidRequest):
        await allocator.allocate(AllocationRequest(owner="c", range="v6", family=Family.IPV4))
    with pytest.raises(InvalidRequest):
        await allocator.allocate(AllocationRequest(owner="c", ip=IP("fd00::5"), family=Family.IPV4))


async def test_requested_ip_must_be_a_usable_address_of_a_range(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/24")
    for ip in ("10.96.0.0", "10.96.0.255", "10.97.0.1"):
        with pytest.raises(IPNotInRange):
            await allocator.allocate(AllocationRequest(owner="a", ip=IP(ip)))
    await ranges.create_range(engine, "other", "10.98.0.0/24")
    with pytest.raises(IPNotInRange):
        await allocator.allocate(AllocationRequest(owner="a", ip=IP("10.98.0.1"), range="default"))


async def test_release_is_guarded_by_owner(engine: AsyncEngine, allocator: Allocator) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/24")
    held, _ = await allocator.allocate(AllocationRequest(owner="a", ip=IP("10.96.0.20")))
    with pytest.raises(OwnerMismatch) as refused:
        await allocator.release(held.ip, owner="b")
    assert refused.value.extensions["holder"] == "a"
    assert await allocator.release(held.ip, owner="a") == (held, held.revision + 1)
    with pytest.raises(IPNotAllocated):
        await allocator.release(held.ip)
    again, _ = await allocator.allocate(AllocationRequest(owner="b", ip=IP("10.96.0.20")))
    assert again.owner == "b"


async def test_range_with_allocations_cannot_be_deleted(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/24")
    held, _ = await allocator.allocate(AllocationRequest(owner="a"))
    with pytest.raises(RangeNotEmpty) as refused:
        await ranges.delete_range(engine, "default")
    assert refused.value.extensions["allocated"] == 1
    await allocator.release(held.ip)
    await ranges.delete_range(engine, "default")
    async with engine.connect() as connection:
        blocks = (await connection.execute(text("SELECT count(*) FROM bitmap_block"))).scalar()
    assert blocks == 0


async def test_huge_ipv6_range_materializes_blocks_lazily(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "v6", "fd00:10:96::/64")
    got = [
        await allocator.allocate(AllocationRequest(owner=f"s{n}", family=Family.IPV6))
        for n in range(20)
    ]
    ips = {a.ip for a, _ in got}
    assert len(ips) == 20
    static, _ = await allocator.allocate(AllocationRequest(owner="static", ip=IP("fd00:10:96::1")))
    assert static.ip == IP("fd00:10:96::1")
    async with engine.connect() as connection:
        blocks = (await connection.execute(text("SELECT count(*) FROM bitmap_block"))).scalar()
    assert blocks <= 3, "allocations share existing blocks instead of creating one each"
    r = await ranges.get_range(engine, "v6")
    assert (r.allocated, r.free) == (21, 2**64 - 1 - 21)


async def test_nearly_full_range_still_finds_the_last_addresses(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    r = await ranges.create_range(engine, "dense", "10.0.0.0/22")  # 1022 usable
    async with engine.begin() as connection:  # fill every bit but one, as if allocated long ago
        await connection.execute(
            text(
                "UPDATE bitmap_block SET bits = decode(repeat('ff', length(bits)), 'hex'), free = 0"
            )
        )
        await connection.execute(
            text("UPDATE ip_range SET allocated = 1021, static_allocated = 64")
        )
        await connection.execute(
            text("UPDATE bitmap_block SET bits = set_bit(bits, 100, 0), free = 1 WHERE band = 1")
        )
    got, _ = await allocator.allocate(AllocationRequest(owner="last"))
    assert r.geometry.offset_of(got.ip) == r.geometry.dynamic_band.offset(0, 100)
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE bitmap_block SET bits = set_bit(bits, 3, 0), free = 1 WHERE band = 0")
        )
        await connection.execute(
            text("UPDATE ip_range SET allocated = 1021, static_allocated = 63")
        )
    static_fallback, _ = await allocator.allocate(AllocationRequest(owner="fallback"))
    assert r.geometry.offset_of(static_fallback.ip) == 4
    with pytest.raises(RangeFull):
        await allocator.allocate(AllocationRequest(owner="none-left"))


async def test_list_pages_in_address_order_at_one_revision(
    engine: AsyncEngine, allocator: Allocator, reader: Reader
) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/24")
    for n in range(7):
        await allocator.allocate(AllocationRequest(owner=f"o{n}"))
    seen, cursor = [], None
    while True:
        page = await list_allocations(reader, limit=3, cursor=cursor)
        assert page.revision == 8
        seen += [a.ip for a in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(seen)
    assert len(seen) == 7
    only = await list_allocations(reader, owner="o3")
    assert [a.owner for a in only.items] == ["o3"]


async def test_a_request_naming_no_range_tries_ranges_by_name_dynamic_bands_first(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    for name, cidr in (("c", "10.3.0.0/27"), ("a", "10.1.0.0/27"), ("b", "10.2.0.0/28")):
        await ranges.create_range(engine, name, cidr)  # /27: 16 static, 14 dynamic; /28: 14
    got = [(await allocator.allocate(AllocationRequest(owner=f"o{n}")))[0] for n in range(14 * 3)]
    assert [a.range for a in got] == ["a"] * 14 + ["b"] * 14 + ["c"] * 14, "dynamic bands by name"
    a = (await ranges.get_range(engine, "a")).geometry
    assert {a.locate(allocation.ip)[0].kind for allocation in got[:14]} == {BandKind.DYNAMIC}
    static = [(await allocator.allocate(AllocationRequest(owner=f"s{n}")))[0] for n in range(17)]
    assert [a.range for a in static] == ["a"] * 16 + ["c"], "then static bands, by name"
    assert (await ranges.get_range(engine, "a")).static_allocated == 16
