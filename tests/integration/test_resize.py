"""Growing and shrinking a range in place: allocations and cooling addresses stay, the bitmap is
rebuilt for the new geometry, counts stay exact, and the range then fills exactly."""

import asyncio
import contextlib
import random

import netaddr
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.domain.address import Family, parse_network
from allocator.domain.errors import (
    AllocationsOutsideRange,
    InvalidRequest,
    IPAlreadyAllocated,
    RangeFull,
    RangeOverlaps,
)
from allocator.domain.model import Allocation
from allocator.domain.range import ServiceRange, static_band_size
from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, Allocator
from allocator.service.verify import verify
from allocator.store import ranges as store_ranges
from tests.integration.consistency import assert_consistent

IP = netaddr.IPAddress


def geometry(cidr: str) -> ServiceRange:
    return ServiceRange.of(parse_network(cidr))


async def hold(
    allocator: Allocator, cidr: str, count: int, seed: int, *, dynamic: bool = True
) -> list[Allocation]:
    """Allocate ``count`` addresses of ``cidr``, the first and last usable ones among them;
    with ``dynamic`` three in four are dynamic, else all are user-requested."""
    g = geometry(cidr)
    rng = random.Random(seed)
    wanted = [g.address_at(1), g.address_at(g.size)]
    held: list[Allocation] = []
    while len(held) < count:
        ip = wanted.pop() if wanted else g.address_at(rng.randint(1, g.size))
        if any(a.ip == ip for a in held) or (dynamic and rng.random() < 0.75):
            ip = None
        if ip is None and not dynamic:
            continue
        owner = f"h{len(held)}"
        request = AllocationRequest(owner=owner, ip=ip, family=g.family)
        held.append((await allocator.allocate(request))[0])
    return held


def shrinks(old: str, new: str) -> bool:
    return geometry(new).size < geometry(old).size


async def resize(engine: AsyncEngine, name: str, cidr: str) -> dict:
    return orjson.loads(await ranges.change_range(engine, name, ranges.RangeChange(cidr=cidr)))


async def fill(allocator: Allocator, name: str) -> list[netaddr.IPAddress]:
    """Allocate from ``name`` until it is full, 16 at a time; return what was handed out."""
    got: list[netaddr.IPAddress] = []
    full = False
    n = 0
    while not full:
        answers = await asyncio.gather(
            *(
                allocator.allocate(AllocationRequest(owner=f"fill{n + k}", range=name))
                for k in range(16)
            ),
            return_exceptions=True,
        )
        n += 16
        for answer in answers:
            if isinstance(answer, RangeFull):
                full = True
            elif isinstance(answer, BaseException):
                raise answer
            else:
                got.append(answer[0].ip)
    return got


async def assert_resized(
    engine: AsyncEngine,
    allocator: Allocator,
    name: str,
    cidr: str,
    held: list[Allocation],
    *,
    filled: bool = True,
) -> None:
    """Every allocation is its owner's as before, the store is consistent and verify finds
    nothing, the static band is KEP-3070's for ``cidr``; then (``filled``) filling the range
    hands out every other usable address exactly once."""
    g = geometry(cidr)
    document = (await ranges.get_range(engine, name)).document()
    assert document["cidr"] == cidr
    assert document["size"] == g.size
    assert document["static_band"]["size"] == static_band_size(g.total) == g.static_band.size
    assert (document["allocated"], document["free"]) == (len(held), g.size - len(held))
    for allocation in held:
        retry = AllocationRequest(owner=allocation.owner, family=allocation.family)
        again, created = await allocator.allocate(retry)
        assert (again.ip, again.revision, created) == (allocation.ip, allocation.revision, False)
    assert await assert_consistent(engine) == {a.ip for a in held}
    report = await verify(engine)
    assert report.consistent, report.document()
    if not filled:
        return
    got = await fill(allocator, name)
    assert len(got) == len(set(got)), "no address handed out twice"
    usable = {g.address_at(offset) for offset in range(1, g.size + 1)}
    assert set(got) == usable - {a.ip for a in held}, "exactly the remaining addresses"
    assert (await verify(engine)).consistent


@pytest.mark.parametrize(
    ("old", "new", "count"),
    [
        ("10.40.0.0/25", "10.40.0.0/23", 40),  # eager, static band 16 -> 32
        ("10.41.1.0/24", "10.41.0.0/22", 60),  # the network address moves
        ("10.42.0.0/22", "10.42.1.0/24", 30),  # shrink: the network address moves too
        ("10.43.0.0/26", "10.43.0.0/27", 12),
        ("fd00:40::/121", "fd00:40::/119", 40),
        ("fd00:41::100/120", "fd00:41::/118", 40),
        ("fd00:42::/118", "fd00:42::200/120", 20),
    ],
)
async def test_resize_keeps_allocations_and_the_range_fills_exactly(
    engine: AsyncEngine, allocator: Allocator, old: str, new: str, count: int
) -> None:
    await ranges.create_range(engine, "r", old)
    shrink = shrinks(old, new)
    held = await hold(allocator, new if shrink else old, count, seed=count, dynamic=not shrink)
    before = await revision(engine)
    changed = await resize(engine, "r", new)
    assert changed["cidr"] == new
    assert await revision(engine) == before + 1, "one revision"
    await assert_resized(engine, allocator, "r", new, held)


async def revision(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        head = await connection.execute(text("SELECT revision FROM log_head"))
        return int(head.scalar_one())


async def test_the_old_broadcast_address_is_usable_after_a_grow(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "r", "10.44.0.0/24")
    held = await hold(allocator, "10.44.0.0/24", 10, seed=1)
    await resize(engine, "r", "10.44.0.0/23")
    ip, created = await allocator.allocate(AllocationRequest(owner="b", ip=IP("10.44.0.255")))
    assert created and ip.range == "r"
    await assert_resized(engine, allocator, "r", "10.44.0.0/23", [*held, ip])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("fd00:50::/104", "fd00:50::/103"),  # eager (2^24 addresses) to lazy
        ("fd00:51::/103", "fd00:51::/104"),  # lazy to eager
        ("fd00:52::/100", "fd00:52::/96"),  # lazy to lazy, a far block
    ],
)
async def test_resize_across_the_eager_and_lazy_geometries(
    engine: AsyncEngine, allocator: Allocator, old: str, new: str
) -> None:
    await ranges.create_range(engine, "r", old)
    shrink = shrinks(old, new)
    held = await hold(allocator, new if shrink else old, 30, seed=2, dynamic=not shrink)
    await resize(engine, "r", new)
    await assert_resized(engine, allocator, "r", new, held, filled=False)
    async with engine.connect() as connection:
        blocks = (await connection.execute(text("SELECT count(*) FROM bitmap_block"))).scalar_one()
    g = geometry(new)
    if g.eager:
        assert blocks == g.static_band.block_count + g.dynamic_band.block_count
    else:
        assert blocks <= len(held), "a lazy range keeps only blocks that hold addresses"
    more = [
        (await allocator.allocate(AllocationRequest(owner=f"m{n}", range="r")))[0]
        for n in range(50)
    ]
    assert all(g.contains(a.ip) for a in more)
    await assert_resized(engine, allocator, "r", new, [*held, *more], filled=False)


async def test_cooling_addresses_stay_cooling_through_a_resize(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "r", "10.45.1.0/24", release_cooldown_seconds=3600)
    held = await hold(allocator, "10.45.1.0/24", 20, seed=3)
    for allocation in held[:5]:
        await allocator.release(allocation.ip)
    await resize(engine, "r", "10.45.0.0/22")
    found = await ranges.get_range(engine, "r")
    assert (found.allocated, found.cooling, found.free) == (15, 5, 1022 - 20)
    assert await assert_consistent(engine) == {a.ip for a in held[5:]}
    back, created = await allocator.allocate(AllocationRequest(owner="h0", ip=held[0].ip))
    assert created and back.ip == held[0].ip, "its releasing owner takes it back"
    got = await fill(allocator, "r")
    assert not set(got) & {a.ip for a in held}, "cooling addresses are never handed out"
    assert len(got) == 1022 - 20


async def test_a_shrink_that_would_strand_addresses_is_refused(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "r", "10.46.0.0/23", release_cooldown_seconds=60)
    for n, ip in enumerate(("10.46.0.255", "10.46.1.7", "10.46.0.0", "10.46.1.200")):
        if ip != "10.46.0.0":
            await allocator.allocate(AllocationRequest(owner=f"o{n}", ip=IP(ip)))
    await allocator.release(IP("10.46.1.200"))  # cooling, also outside
    before = (await ranges.get_range(engine, "r")).document()
    head = await revision(engine)
    with pytest.raises(AllocationsOutsideRange) as refused:
        await resize(engine, "r", "10.46.0.0/24")
    assert refused.value.extensions == {
        "count": 3,
        "examples": ["10.46.0.255", "10.46.1.7", "10.46.1.200"],
    }, "the new broadcast address counts as outside"
    with pytest.raises(AllocationsOutsideRange) as refused:
        await resize(engine, "r", "10.46.1.0/24")
    assert refused.value.extensions["examples"] == ["10.46.0.255"]
    assert (await ranges.get_range(engine, "r")).document() == before
    assert await revision(engine) == head, "nothing stored"
    await assert_consistent(engine)


async def test_a_grow_into_another_range_is_refused_naming_it(engine: AsyncEngine) -> None:
    await ranges.create_range(engine, "r", "10.47.0.0/24")
    await ranges.create_range(engine, "next-door", "10.47.1.0/24")
    with pytest.raises(RangeOverlaps) as refused:
        await resize(engine, "r", "10.47.0.0/23")
    assert refused.value.extensions == {"conflicting_range": "next-door"}


@pytest.mark.parametrize(
    "cidr", ["10.48.0.0/31", "10.0.0.0/7", "10.49.0.0/24", "fd00::/120", "10.48.0.1/24"]
)
async def test_a_cidr_that_is_no_resize_of_the_range_is_refused(
    engine: AsyncEngine, cidr: str
) -> None:
    await ranges.create_range(engine, "r", "10.48.0.0/24")
    with pytest.raises(InvalidRequest) as refused:
        await resize(engine, "r", cidr)
    assert refused.value.extensions["errors"][0]["field"] == "cidr"


async def test_concurrent_writers_are_serialized_with_resizes(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    """16 clients allocate (named, unnamed, user-requested) and release while the range grows
    and shrinks: nothing acknowledged is lost or doubled, no request fails."""
    await ranges.create_range(engine, "r", "10.50.0.0/24")
    await ranges.create_range(engine, "v6", "fd00:50::/120")
    held: dict[str, netaddr.IPAddress] = {}
    stop = asyncio.Event()

    async def client(n: int) -> None:
        rng = random.Random(n)
        attempt = 0
        while not stop.is_set():
            owner = f"c{n}-{attempt}"
            attempt += 1
            if held and rng.random() < 0.3:
                mine = [o for o in held if o.startswith(f"c{n}-")]
                if mine:
                    victim = rng.choice(mine)
                    await allocator.release(held.pop(victim), victim)
                    continue
            family = Family.IPV6 if rng.random() < 0.2 else None
            ip = IP(f"10.50.0.{rng.randint(1, 250)}") if not family and rng.random() < 0.2 else None
            name = rng.choice([None, "r"]) if family is None else None
            try:
                got, created = await allocator.allocate(
                    AllocationRequest(owner=owner, ip=ip, range=name, family=family)
                )
            except IPAlreadyAllocated:
                continue
            assert created
            assert got.ip not in held.values(), f"{got.ip} acknowledged twice"
            held[owner] = got.ip

    async def resizer() -> None:
        for cidr in ("10.50.0.0/23", "10.50.0.0/22", "10.50.0.0/23", "10.50.0.0/21"):
            await asyncio.sleep(0.2)
            # The shrink is refused when an address beyond the /23 is held by then.
            with contextlib.suppress(AllocationsOutsideRange):
                await resize(engine, "r", cidr)
        stop.set()

    await asyncio.gather(resizer(), *(client(n) for n in range(16)))
    assert await assert_consistent(engine) == set(held.values())
    assert (await verify(engine)).consistent
    async with engine.connect() as connection:
        rows = dict((await connection.execute(text("SELECT owner, ip FROM allocation"))).all())
    assert {o: IP(str(ip)) for o, ip in rows.items()} == held, "nothing lost"


async def test_writes_that_arrive_during_a_resize_wait_for_it_and_then_succeed(
    engine: AsyncEngine, allocator: Allocator
) -> None:
    await ranges.create_range(engine, "r", "10.51.1.0/24")
    held = await hold(allocator, "10.51.1.0/24", 20, seed=4)
    async with engine.begin() as connection:
        # A resize to 10.51.0.0/22, as change_range makes it, not yet committed.
        stored = await store_ranges.get(connection, "r")
        assert stored is not None
        await store_ranges.lock(connection, stored.id)
        new = geometry("10.51.0.0/22")
        await store_ranges.update(connection, stored, {"cidr": new.cidr}, new)
        writes = [
            asyncio.ensure_future(allocator.allocate(AllocationRequest(owner=f"w{n}", range=r)))
            for n, r in enumerate(["r", None] * 6)
        ]
        writes += [
            asyncio.ensure_future(
                allocator.allocate(AllocationRequest(owner="s", ip=IP("10.51.1.77")))
            ),
            asyncio.ensure_future(allocator.release(held[0].ip, held[0].owner)),
            asyncio.ensure_future(allocator.release_owner(held[1].owner)),
        ]
        await asyncio.sleep(0.5)
        assert not any(w.done() for w in writes), "they wait for the resize"
    answers = await asyncio.gather(*writes)
    made = [a[0] for a in answers[:13]]
    assert all(new.contains(a.ip) for a in made)
    kept = [a for a in held[2:] if a.ip not in {m.ip for m in made}]
    assert await assert_consistent(engine) == {a.ip for a in kept + made}
    assert (await verify(engine)).consistent


async def test_a_grow_racing_a_creation_in_its_new_part_one_wins(engine: AsyncEngine) -> None:
    """Only the exclusion constraint can settle this race: the loser is run again and then
    answers range-overlaps naming the winner."""
    for n in range(6):
        await ranges.create_range(engine, f"r{n}", f"10.{60 + n}.0.0/24")
        outcomes = await asyncio.gather(
            resize(engine, f"r{n}", f"10.{60 + n}.0.0/23"),
            ranges.create_range(engine, f"c{n}", f"10.{60 + n}.1.0/24"),
            return_exceptions=True,
        )
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(refused) == 1, outcomes
        assert isinstance(refused[0], RangeOverlaps)
        winner = f"c{n}" if refused[0] is outcomes[0] else f"r{n}"
        assert refused[0].extensions == {"conflicting_range": winner}
    await assert_consistent(engine)
