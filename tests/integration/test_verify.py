"""``verify``: each kind of corruption, made on purpose with direct SQL, is found and repaired;
a healthy store after concurrent traffic is found consistent, also while repairs run."""

import asyncio
import random

import netaddr
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.domain.address import Family
from allocator.domain.errors import IPAlreadyAllocated, RangeFull
from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, Allocator
from allocator.service.verify import Kind, Report, Resolution, verify
from allocator.service.verify.repair import repair
from tests.integration.consistency import assert_consistent

NONE = dict.fromkeys((str(k) for k in Kind), 0)


async def sql(engine: AsyncEngine, statement: str, **params: object) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(statement), params)


async def take(allocator: Allocator, owner: str, ip: str) -> None:
    await allocator.allocate(AllocationRequest(owner=owner, ip=netaddr.IPAddress(ip)))


def found(report: Report, **counts: int) -> dict[str, int]:
    return {**NONE, **{k.replace("_", "-"): v for k, v in counts.items()}}


@pytest.fixture
async def small(engine: AsyncEngine, allocator: Allocator) -> int:
    """A /24 (static band .1-.16, dynamic .17-.254) holding .20, .21 and .30; its id."""
    created = await ranges.create_range(engine, "small", "10.0.0.0/24")
    for n, ip in enumerate(("10.0.0.20", "10.0.0.21", "10.0.0.30")):
        await take(allocator, f"o{n}", ip)
    return created.id


async def assert_clean(engine: AsyncEngine) -> None:
    report = await verify(engine)
    assert report.counts() == NONE, report.document()
    await assert_consistent(engine)


async def test_a_healthy_store_is_consistent(engine: AsyncEngine, small: int) -> None:
    seen: list[tuple[str, int, int]] = []
    report = await verify(engine, progress=lambda *p: seen.append(p))
    assert report.consistent and report.counts() == NONE
    assert (report.ranges, report.blocks, report.allocations, report.revision) == (1, 2, 3, 4)
    assert seen[-1] == ("small", 2, 2)


async def test_a_leaked_bit_is_found_and_cleared(
    engine: AsyncEngine, small: int, allocator: Allocator
) -> None:
    # 10.0.0.117 is dynamic offset 117 - 17 = bit 100 of dynamic block 0; bit 239 is padding
    # (the dynamic band has 238 addresses); counts are bumped too so only the bits are wrong.
    await sql(
        engine,
        "UPDATE bitmap_block SET bits = set_bit(set_bit(bits, 100, 1), 239, 1), free = free - 1"
        " WHERE range_id = :id AND band = 1 AND block_no = 0",
        id=small,
    )
    await sql(engine, "UPDATE ip_range SET allocated = allocated + 1 WHERE id = :id", id=small)
    report = await verify(engine)
    assert report.counts() == found(report, leak=2)
    assert [f.ip for f in report.findings] == ["10.0.0.117", None]
    assert not report.consistent and report.unresolved == report.findings
    repaired = await verify(engine, repair=True)
    assert [f.outcome for f in repaired.findings] == [Resolution.REPAIRED, Resolution.REPAIRED]
    assert repaired.unresolved == []
    await assert_clean(engine)
    await take(allocator, "newcomer", "10.0.0.117")  # the address can be handed out again


async def test_a_missing_bit_is_found_and_set(
    engine: AsyncEngine, small: int, allocator: Allocator
) -> None:
    # 10.0.0.30 is held, but its bit (dynamic bit 13) is cleared and the counts follow the bits.
    await sql(
        engine,
        "UPDATE bitmap_block SET bits = set_bit(bits, 13, 0), free = free + 1"
        " WHERE range_id = :id AND band = 1 AND block_no = 0",
        id=small,
    )
    await sql(engine, "UPDATE ip_range SET allocated = allocated - 1 WHERE id = :id", id=small)
    report = await verify(engine, repair=True)
    assert report.counts() == found(report, missing_bit=1)
    assert (report.findings[0].ip, report.findings[0].outcome) == ("10.0.0.30", Resolution.REPAIRED)
    await assert_clean(engine)
    with pytest.raises(IPAlreadyAllocated):  # the address can no longer be handed out twice
        await take(allocator, "intruder", "10.0.0.30")


async def test_drifting_counts_are_found_and_recounted(engine: AsyncEngine, small: int) -> None:
    await sql(
        engine,
        "UPDATE bitmap_block SET free = free + 5 WHERE range_id = :id AND band = 0",
        id=small,
    )
    await sql(engine, "UPDATE ip_range SET allocated = allocated + 3 WHERE id = :id", id=small)
    report = await verify(engine, repair=True)
    assert report.counts() == found(report, count_drift=2)
    assert {f.outcome for f in report.findings} == {Resolution.REPAIRED}
    await assert_clean(engine)
    assert (await ranges.get_range(engine, "small")).allocated == 3


async def test_out_of_range_rows_are_released_with_events(engine: AsyncEngine, small: int) -> None:
    for ip in ("10.0.0.255", "10.9.9.9"):  # the broadcast address, and another CIDR
        await sql(
            engine,
            "INSERT INTO allocation (ip, family, range_id, owner, created_at, revision)"
            " VALUES (CAST(:ip AS inet), 'IPv4', :id, :ip, now(), 1)",
            ip=ip,
            id=small,
        )
    report = await verify(engine)
    assert report.counts() == found(report, out_of_range=2)
    assert sorted(f.ip for f in report.findings if f.ip) == ["10.0.0.255", "10.9.9.9"]
    await verify(engine, repair=True)
    async with engine.connect() as connection:
        events = (
            await connection.execute(
                text("SELECT revision, type, payload FROM event WHERE revision > 4 ORDER BY 1")
            )
        ).all()
    assert [(e.revision, e.type) for e in events] == [(5, "RELEASED"), (6, "RELEASED")]
    assert sorted(e.payload["allocation"]["ip"] for e in events) == ["10.0.0.255", "10.9.9.9"]
    await assert_clean(engine)


async def test_a_missing_lazy_block_is_recreated(engine: AsyncEngine, allocator: Allocator) -> None:
    await ranges.create_range(engine, "v6", "fd00:10:96::/64")
    await take(allocator, "a", "fd00:10:96::1:5")
    await sql(engine, "DELETE FROM bitmap_block")
    report = await verify(engine, repair=True)
    assert report.counts() == found(report, missing_bit=1, count_drift=1)
    assert "does not exist" in report.findings[0].detail
    await assert_clean(engine)
    with pytest.raises(IPAlreadyAllocated):
        await take(allocator, "b", "fd00:10:96::1:5")


async def test_a_gap_in_the_log_is_reported_and_kept(
    engine: AsyncEngine, small: int, allocator: Allocator
) -> None:
    await sql(engine, "DELETE FROM event WHERE revision IN (2, 4)")
    report = await verify(engine, repair=True)
    assert report.counts() == found(report, log_gap=2)
    assert [f.detail for f in report.findings] == [
        "the log has no event for revision 2",
        "the log has no event for revision 4",
    ]
    assert [f.outcome for f in report.unresolved] == [Resolution.KEPT, Resolution.KEPT]
    # Compaction up to 4 (events 1..4 deleted, compacted = 4) is no gap.
    await sql(engine, "DELETE FROM event WHERE revision <= 4")
    await sql(engine, "UPDATE log_head SET compacted = 4")
    assert (await verify(engine)).counts() == NONE


async def traffic(allocator: Allocator, clients: int, rounds: int) -> None:
    """Concurrent dynamic and user-requested allocations and releases, bounded in count."""

    async def client(n: int) -> None:
        rng = random.Random(n)
        for attempt in range(rounds):
            owner = f"c{n}-{attempt}"
            ip = f"10.1.0.{rng.randint(1, 254)}" if rng.random() < 0.3 else None
            family = "IPv6" if rng.random() < 0.3 else "IPv4"
            try:
                held, _ = await allocator.allocate(
                    AllocationRequest(
                        owner=owner,
                        ip=netaddr.IPAddress(ip) if ip and family == "IPv4" else None,
                        family=None if ip and family == "IPv4" else family_of(family),
                    ),
                )
            except (IPAlreadyAllocated, RangeFull):
                continue
            if rng.random() < 0.5:
                await allocator.release(held.ip, owner)  # only this client releases it

    await asyncio.gather(*(client(n) for n in range(clients)))


def family_of(name: str) -> Family:
    return Family(name)


async def test_verify_is_clean_after_concurrent_traffic(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "busy", "10.1.0.0/24")
    await ranges.create_range(engine, "busy6", "fd00:1::/64")
    await traffic(allocator, clients=12, rounds=15)
    report = await verify(engine)
    assert report.counts() == NONE, report.document()
    assert report.allocations == sum(r.allocated for r in await ranges.list_ranges(engine))


async def test_repairs_run_while_the_service_serves(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    busy = await ranges.create_range(engine, "busy", "10.1.0.0/24")
    await ranges.create_range(engine, "busy6", "fd00:1::/64")
    await sql(engine, "UPDATE ip_range SET allocated = allocated + 7 WHERE id = :id", id=busy.id)
    await sql(
        engine,
        "UPDATE bitmap_block SET bits = set_bit(bits, 200, 1), free = free - 1"
        " WHERE range_id = :id AND band = 1",
        id=busy.id,
    )
    repair = asyncio.create_task(verify(engine, repair=True))
    await traffic(allocator, clients=12, rounds=15)
    report = await repair
    assert report.counts()["leak"] + report.counts()["count-drift"] >= 2
    await assert_clean(engine)


async def test_a_cooling_address_is_no_leak_and_its_clear_bit_is_found(
    engine: AsyncEngine, small: int, allocator: Allocator
) -> None:
    await ranges.change_range(engine, "small", ranges.RangeChange(release_cooldown_seconds=600))
    await allocator.release(netaddr.IPAddress("10.0.0.21"))
    await allocator.release(netaddr.IPAddress("10.0.0.30"))
    await assert_clean(engine)  # its bit is set with no allocation row: that is the cool-down

    await sql(
        engine,
        "UPDATE bitmap_block SET bits = set_bit(bits, 13, 0), free = free + 1"
        " WHERE range_id = :id AND band = 1",
        id=small,
    )  # .30 is bit 13 of the dynamic band (.17 is bit 0)
    await sql(engine, "UPDATE ip_range SET cooling = 5 WHERE id = :id", id=small)
    report = await verify(engine)
    assert report.counts() == found(report, cooling_missing_bit=1, count_drift=1)
    clear = next(f for f in report.findings if f.kind is Kind.COOLING_MISSING_BIT)
    assert clear.ip == "10.0.0.30"
    repaired = await verify(engine, repair=True)
    assert all(f.outcome is Resolution.REPAIRED for f in repaired.findings)
    await assert_clean(engine)
    assert (await ranges.get_range(engine, "small")).cooling == 2


async def test_a_bit_outside_the_geometry_after_a_shrink_is_found_and_its_block_dropped(
    engine: AsyncEngine, small: int
) -> None:
    await ranges.change_range(engine, "small", ranges.RangeChange(cidr="10.0.0.0/25"))
    await assert_clean(engine)
    # A dynamic block the /25 does not have (it has one), with a bit set.
    await sql(
        engine,
        "INSERT INTO bitmap_block (range_id, band, block_no, bits, free)"
        " VALUES (:id, 1, 1, set_bit(decode(repeat('00', 512), 'hex'), 7, 1), 4095)",
        id=small,
    )
    report = await verify(engine)
    assert report.counts() == found(report, leak=1, count_drift=1)
    assert "outside the geometry of 10.0.0.0/25" in report.findings[0].detail
    repaired = await verify(engine, repair=True)
    assert all(f.outcome is Resolution.REPAIRED for f in repaired.findings)
    await assert_clean(engine)


async def test_a_repair_after_a_resize_leaves_the_block_alone(
    engine: AsyncEngine, small: int
) -> None:
    await sql(
        engine,
        "UPDATE bitmap_block SET bits = set_bit(bits, 100, 1), free = free - 1"
        " WHERE range_id = :id AND band = 1",
        id=small,
    )
    report = await verify(engine)
    assert report.counts() == found(report, leak=1, count_drift=1)
    await ranges.change_range(engine, "small", ranges.RangeChange(cidr="10.0.0.0/23"))
    # The check's geometry is gone: the repair must not clear bit 100 of the new geometry.
    await repair(engine, report)
    assert [f.outcome for f in report.findings if f.kind is Kind.LEAK] == [Resolution.GONE]
