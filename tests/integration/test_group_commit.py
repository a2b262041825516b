"""Group commit: concurrent dynamic allocations sharing one transaction, each with its own answer."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import netaddr
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.domain.address import Family
from allocator.domain.errors import InvalidRequest, NoRangeForFamily, RangeFull, RangeNotFound
from allocator.service import group_commit, ranges
from allocator.service.allocations import AllocationRequest, allocate_one
from allocator.service.group_commit import AllocationBatcher, allocate_batch
from allocator.service.unit_of_work import run
from allocator.settings import Settings
from allocator.store.database import create_engine
from tests.integration.consistency import assert_consistent


async def batch_sizes(engine: AsyncEngine) -> list[int]:
    """Return how many events each transaction wrote (events of one transaction share now())."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT count(*) FROM event WHERE type = 'ALLOCATED' GROUP BY created_at"
                " ORDER BY min(revision)"
            )
        )
        return [int(n) for n in rows.scalars()]


async def test_a_batch_answers_each_request_on_its_own(engine: AsyncEngine) -> None:
    await ranges.create_range(engine, "small", "10.0.0.0/28")  # 14 addresses, no static band
    await ranges.create_range(engine, "v4", "10.1.0.0/24")
    held, _ = await allocate_one(engine, AllocationRequest(owner="holder", range="v4"))
    for n in range(13):
        await allocate_one(engine, AllocationRequest(owner=f"fill-{n}", range="small"))
    requests = [
        AllocationRequest(owner="a", range="v4"),
        AllocationRequest(owner="b", range="nope"),
        AllocationRequest(owner="c", range="v4", family=Family.IPV6),
        AllocationRequest(owner="a", range="v4"),
        AllocationRequest(owner="holder", range="v4"),
        AllocationRequest(owner="d", family=Family.IPV6),
        AllocationRequest(owner="e", range="small"),
        AllocationRequest(owner="f", range="small"),
        AllocationRequest(owner="g"),
    ]
    head_before = 16  # two ranges, one holder, 13 fills
    outcomes = await run(engine, lambda c: allocate_batch(c, requests))

    assert isinstance(outcomes[1], RangeNotFound)
    assert isinstance(outcomes[2], InvalidRequest)
    assert isinstance(outcomes[5], NoRangeForFamily)
    assert outcomes[7] is None, "the band is full for this batch: the request runs alone"
    created = {i: o for i, o in enumerate(outcomes) if isinstance(o, tuple) and o[1]}
    assert sorted(created) == [0, 6, 8]
    assert [a.revision for a, _ in created.values()] == [head_before + n for n in (1, 2, 3)], (
        "consecutive revisions in request order"
    )
    assert created[6][0].range == "small"
    assert created[8][0].range == "v4", "the small range has no free address left for g"
    assert outcomes[3] == (created[0][0], False), "the same owner twice gets one address"
    assert outcomes[4] == (held, False), "an owner that holds one gets it back"
    addresses = await assert_consistent(engine)
    assert {a.ip for a, _ in created.values()} <= addresses
    assert await batch_sizes(engine) == [1] * 14 + [3]


async def test_concurrent_requests_get_their_own_answers(
    engine: AsyncEngine,
) -> None:
    await ranges.create_range(engine, "small", "10.0.0.0/27")  # 30 addresses, 16 static
    batcher = AllocationBatcher(engine)
    requests = [AllocationRequest(owner=f"o{n % 40}", range="small") for n in range(48)]
    requests += [AllocationRequest(owner=f"x{n}", range="missing") for n in range(4)]
    outcomes = await asyncio.gather(
        *(batcher.allocate(r) for r in requests), return_exceptions=True
    )
    answers = [o for o in outcomes if isinstance(o, tuple)]
    created = [a for a, new in answers if new]
    assert len(created) == 30 and len({a.ip for a in created}) == 30, "the range fills exactly"
    by_owner: dict[str, set[netaddr.IPAddress]] = {}
    for allocation, _ in answers:
        by_owner.setdefault(allocation.owner, set()).add(allocation.ip)
    assert all(len(ips) == 1 for ips in by_owner.values()), "one address per owner"
    full = {r.owner for r, o in zip(requests, outcomes, strict=True) if isinstance(o, RangeFull)}
    assert len(full) == 40 - 30 and not full & set(by_owner)
    errors = Counter(type(o) for o in outcomes if isinstance(o, Exception))
    assert set(errors) == {RangeFull, RangeNotFound} and errors[RangeNotFound] == 4
    assert await assert_consistent(engine) == {a.ip for a in created}


async def test_requests_made_together_share_a_transaction(engine: AsyncEngine) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/16")  # 16 blocks: none to wait for
    batcher = AllocationBatcher(engine)
    answers = await asyncio.gather(
        *(batcher.allocate(AllocationRequest(owner=f"o{n}")) for n in range(32))
    )
    sizes = await batch_sizes(engine)
    assert sum(sizes) == 32 and max(sizes) > 1, sizes
    assert sorted(a.revision for a, _ in answers) == list(range(2, 34)), "dense, one each"
    await assert_consistent(engine)


async def test_group_commit_off_commits_one_by_one(engine: AsyncEngine) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/16")
    batcher = AllocationBatcher(engine, max_batch=1)
    await asyncio.gather(*(batcher.allocate(AllocationRequest(owner=f"o{n}")) for n in range(16)))
    assert await batch_sizes(engine) == [1] * 16
    await assert_consistent(engine)


@pytest.fixture
async def second_engine(engine: AsyncEngine, database_url: str) -> AsyncIterator[AsyncEngine]:
    """Another engine on the same database: a second server process, as far as Postgres knows."""
    other = create_engine(database_url, Settings(database_url=database_url, pool_size=20))
    yield other
    await other.dispose()


async def test_two_processes_batching_the_same_owners(
    engine: AsyncEngine, second_engine: AsyncEngine
) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/22")
    first, second = AllocationBatcher(engine), AllocationBatcher(second_engine)
    owners = [f"o{n}" for n in range(40)]
    outcomes = await asyncio.gather(
        *(b.allocate(AllocationRequest(owner=o)) for o in owners for b in (first, second))
    )
    created: Counter[str] = Counter()
    ip_of: dict[str, set[netaddr.IPAddress]] = {}
    for allocation, new in outcomes:
        created[allocation.owner] += new
        ip_of.setdefault(allocation.owner, set()).add(allocation.ip)
    assert all(created[o] == 1 for o in owners), "each owner is created exactly once"
    assert all(len(ip_of[o]) == 1 for o in owners), "both processes answer with the same address"
    assert await assert_consistent(engine) == {ip for ips in ip_of.values() for ip in ips}


async def test_the_default_batcher_is_the_one_configured(engine: AsyncEngine) -> None:
    configured = group_commit.configure(engine, max_batch=8)
    try:
        assert group_commit.batcher(engine) is configured
    finally:
        group_commit.configure(engine)
