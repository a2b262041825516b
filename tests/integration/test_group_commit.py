"""Group commit: concurrent writes of a process share one call of the write statement, and each
gets the answer it would get alone."""

import asyncio
import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import netaddr
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.domain.errors import AllocatorError, IPAlreadyAllocated, RangeFull, RangeNotFound
from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, Allocator
from allocator.settings import Settings
from allocator.store.database import create_pool
from allocator.store.write import Kind, Operation, Outcome, write
from tests.database import empty_tables
from tests.integration.consistency import assert_consistent

IP = netaddr.IPAddress


async def call_sizes(engine: AsyncEngine) -> list[int]:
    """Return how many events each call wrote: a call inserts its events in one statement, so they
    share its transaction id (``xmin``); two calls may share a ``now()``."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT count(*) FROM event GROUP BY CAST(xmin AS text) ORDER BY min(revision)")
        )
        return [int(n) for n in rows.scalars()]


def mixed_group() -> list[Operation]:
    """Every kind of write, refusals and retries among them, some depending on earlier ones."""
    allocate, release, release_owner = Kind.ALLOCATE, Kind.RELEASE, Kind.RELEASE_OWNER
    return [
        Operation(allocate, "a", range="v4"),
        Operation(allocate, "b", range="nope"),
        Operation(allocate, "c", range="v4", family="IPv6"),
        Operation(allocate, "a", range="v4"),  # the same owner again: gets the first one's
        Operation(allocate, "holder"),  # holds one already
        Operation(allocate, "d", family="IPv6"),  # no IPv6 range
        Operation(allocate, "e", ip="10.1.0.5"),
        Operation(allocate, "f", ip="10.1.0.5"),  # taken by e just before
        Operation(allocate, "e", ip="10.1.0.6"),  # e holds another
        Operation(allocate, "g", ip="10.1.0.0"),  # the network address
        Operation(allocate, "h", ip="10.2.0.1"),  # in no range
        Operation(release, "zz", ip="10.1.0.5"),  # guarded by the wrong owner
        Operation(release, "e", ip="10.1.0.5"),
        Operation(allocate, "f", ip="10.1.0.5"),  # free again
        Operation(release, None, ip="10.1.0.77"),  # not allocated
        Operation(allocate, "i", range="small"),
        Operation(allocate, "j", range="small"),  # the last address of small went to i
        Operation(release_owner, "holder"),
        Operation(release_owner, "nobody"),
        Operation(allocate, "holder", ip="10.1.0.9"),
    ]


async def setup_mixed(engine: AsyncEngine, allocator: Allocator) -> None:
    await ranges.create_range(engine, "small", "10.0.0.0/28")  # 14 addresses, no static band
    await ranges.create_range(engine, "v4", "10.1.0.0/24")
    await allocator.allocate(AllocationRequest(owner="holder", range="v4"))
    for n in range(13):
        await allocator.allocate(AllocationRequest(owner=f"fill-{n}", range="small"))


def summary(outcome: Outcome, dynamic: bool) -> tuple[Any, ...]:
    """What must not depend on grouping: status, problem and (unless picked at random) address."""
    body = json.loads(outcome.body) if outcome.body else None
    ip = body["ip"] if isinstance(body, dict) and not dynamic else None
    return outcome.status, outcome.problem, ip


async def test_a_group_answers_each_operation_as_if_it_ran_alone(
    engine: AsyncEngine, allocator: Allocator, pool: Any
) -> None:
    group = mixed_group()
    await setup_mixed(engine, allocator)
    async with pool.acquire() as connection:
        together = await write(connection, group)
    head = 16  # two ranges, one holder, 13 fills
    addresses = await assert_consistent(engine)
    assert await call_sizes(engine) == [1] * head + [7], "one call, one commit"

    await empty_tables(engine)
    await setup_mixed(engine, allocator)
    async with pool.acquire() as connection:
        alone = [(await write(connection, [op]))[0] for op in group]
    assert len(await assert_consistent(engine)) == len(addresses) == 17

    dynamic = [op.kind is Kind.ALLOCATE and op.ip is None for op in group]
    assert [summary(o, d) for o, d in zip(together, dynamic, strict=True)] == [
        summary(o, d) for o, d in zip(alone, dynamic, strict=True)
    ]
    assert [o.status for o in together] == [
        201, 404, 422, 200, 200, 422, 201, 409, 409, 422,
        422, 409, 204, 201, 404, 201, 409, 200, 200, 201,
    ]  # fmt: skip
    assert [o.revision for o in together if o.status in (201, 204)] == [
        head + n for n in (1, 2, 3, 4, 5, 7)
    ], "consecutive revisions in request order (the release of holder's took revision 6)"
    assert together[17].revision == head + 6 and together[18].body == "[]"
    assert json.loads(together[3].body or "")["ip"] == json.loads(together[0].body or "")["ip"]
    assert json.loads(together[7].extension or "")["holder"] == "e"
    assert json.loads(together[8].extension or "")["allocation"]["ip"] == "10.1.0.5"


async def test_concurrent_requests_get_their_own_answers(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "small", "10.0.0.0/27")  # 30 addresses, 16 static
    requests = [AllocationRequest(owner=f"o{n % 40}", range="small") for n in range(48)]
    requests += [AllocationRequest(owner=f"x{n}", range="missing") for n in range(4)]
    outcomes = await asyncio.gather(
        *(allocator.allocate(r) for r in requests), return_exceptions=True
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


async def test_requests_made_together_share_a_call(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/16")  # 16 blocks: none to wait for
    answers = await asyncio.gather(
        *(allocator.allocate(AllocationRequest(owner=f"o{n}")) for n in range(32))
    )
    sizes = await call_sizes(engine)
    assert sum(sizes) == 33 and max(sizes) > 1, sizes
    assert sorted(a.revision for a, _ in answers) == list(range(2, 34)), "dense, one each"
    released = await asyncio.gather(*(allocator.release(a.ip, a.owner) for a, _ in answers))
    assert sorted(revision for _, revision in released) == list(range(34, 66))
    assert max((await call_sizes(engine))[-len(released) :]) > 1, "releases share calls too"
    assert await assert_consistent(engine) == set()


async def test_group_commit_off_commits_one_by_one(engine: AsyncEngine, pool: Any) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/16")
    alone = Allocator(pool, max_group=1)
    await asyncio.gather(*(alone.allocate(AllocationRequest(owner=f"o{n}")) for n in range(16)))
    assert await call_sizes(engine) == [1] * 17
    await assert_consistent(engine)


@pytest.fixture
async def second_pool(pool: Any, database_url: str) -> AsyncIterator[Any]:
    """Another pool on the same database: a second server process, as far as Postgres knows."""
    other = await create_pool(database_url, Settings(database_url=database_url, pool_size=20))
    yield other
    await other.close()


async def test_two_processes_grouping_the_same_owners(
    engine: AsyncEngine, pool: Any, second_pool: Any
) -> None:
    await ranges.create_range(engine, "default", "10.96.0.0/22")
    first, second = Allocator(pool), Allocator(second_pool)
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


async def test_grouped_releases_race_grouped_allocations_of_the_same_addresses(
    engine: AsyncEngine, pool: Any, second_pool: Any
) -> None:
    """Two processes: each client takes one of a few addresses by name and releases it (guarded),
    so releases and allocations of the same addresses meet in groups of both processes."""
    await ranges.create_range(engine, "default", "10.96.0.0/24")
    processes = (Allocator(pool), Allocator(second_pool))
    addresses = [IP(f"10.96.0.{n}") for n in range(20, 28)]
    acknowledged: list[tuple[int, str, str, str]] = []  # (revision, kind, ip, owner)
    refusals: list[str] = []  # the holders named by refused allocations

    async def client(n: int) -> None:
        rng = random.Random(n)
        allocator = processes[n % 2]
        for round_ in range(12):
            owner, ip = f"c{n}-{round_}", rng.choice(addresses)
            try:
                got, created = await allocator.allocate(AllocationRequest(owner=owner, ip=ip))
            except IPAlreadyAllocated as refused:
                refusals.append(refused.extensions["holder"])
                continue
            assert created and got.ip == ip
            acknowledged.append((got.revision, "ALLOCATED", str(ip), owner))
            _, revision = await allocator.release(ip, owner)
            acknowledged.append((revision, "RELEASED", str(ip), owner))

    await asyncio.gather(*(client(n) for n in range(16)))
    assert await assert_consistent(engine) == set()
    async with engine.connect() as connection:
        log = (await connection.execute(text("SELECT revision, payload FROM event"))).all()
    replayed = sorted(
        (r, p["type"], p["allocation"]["ip"], p["allocation"]["owner"])
        for r, p in (
            (
                row.revision,
                row.payload if isinstance(row.payload, dict) else json.loads(row.payload),
            )
            for row in log
        )
        if p["type"] != "RANGE_ADDED"
    )
    assert replayed == sorted(acknowledged), "every acknowledged change is in the log, as answered"
    holder: dict[str, str] = {}
    for _, kind, ip, owner in replayed:  # in revision order: no address is ever held twice
        if kind == "ALLOCATED":
            assert ip not in holder, f"{ip} given to {owner} while {holder.get(ip)} held it"
            holder[ip] = owner
        else:
            assert holder.pop(ip) == owner
    assert len(acknowledged) > 16 and refusals, "the race ran"
    assert all(holder.startswith("c") for holder in refusals), "a refusal names the holder"


async def test_a_group_whose_call_fails_as_a_whole_runs_again_one_by_one(
    engine: AsyncEngine, allocator: Allocator, database_url: str
) -> None:
    """Another process allocates for owner x and commits while a group holding x waits for it:
    the group's call fails on the unique owner, and each of its requests runs again alone."""
    await ranges.create_range(engine, "default", "10.96.0.0/24")
    other = await asyncpg.connect(database_url)
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.fetch(
            "SELECT * FROM allocator_write('{allocate}', '{x}', '{10.96.0.50}', '{NULL}',"
            " '{NULL}', '{NULL}')"
        )
        started = [asyncio.create_task(allocator.allocate(AllocationRequest(owner="first")))]
        started += [
            asyncio.create_task(allocator.allocate(AllocationRequest(owner=owner)))
            for owner in ("x", "b")
        ]
        while not await other.fetchval(  # noqa: ASYNC110 (a state of the database, no event)
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        ):
            await asyncio.sleep(0.01)  # until the group waits for the uncommitted owner x
        await transaction.commit()
        outcomes = await asyncio.gather(*started, return_exceptions=True)
    finally:
        await other.close()
    assert not [o for o in outcomes if isinstance(o, AllocatorError | BaseException)], outcomes
    (first, first_new), (x, x_new), (b, b_new) = outcomes  # type: ignore[misc]
    assert (str(x.ip), x_new) == ("10.96.0.50", False), "x gets what the other process gave it"
    assert first_new and b_new and len({first.ip, b.ip, x.ip}) == 3
    assert await assert_consistent(engine) == {first.ip, b.ip, x.ip}
