"""Upgrades keep data: a database written by the previous schema upgrades with everything intact."""

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import netaddr
import orjson
import pytest
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.domain.errors import RangeNotAllocatable
from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, Allocator
from allocator.settings import Settings
from allocator.store import migration
from allocator.store.database import create_engine, create_pool
from tests.integration.consistency import assert_consistent

IP = netaddr.IPAddress

# What the previous version wrote for two ranges and three allocations: a /24 with .3 in its
# static band and .100 in its dynamic band, a lazy IPv6 /64 with one address in the far half of
# its dynamic band (the last block, 3,839 bits long), their events and the head.
PREVIOUS_VERSION_DATA = """
INSERT INTO ip_range (id, name, cidr, family, static_size, allocated, created_at, revision)
VALUES (1, 'old-v4', '10.0.0.0/24', 'IPv4', 16, 2, now(), 1),
       (2, 'old-v6', 'fd00::/64', 'IPv6', 256, 1, now(), 2);
INSERT INTO bitmap_block (range_id, band, block_no, bits, free)
VALUES (1, 0, 0, set_bit(decode(repeat('00', 2), 'hex'), 2, 1), 15),
       (1, 1, 0, set_bit(decode(repeat('00', 30), 'hex'), 83, 1), 237),
       (2, 1, 4503599627370495, set_bit(decode(repeat('00', 480), 'hex'), 3837, 1), 3838);
INSERT INTO allocation (ip, family, range_id, owner, metadata, created_at, revision)
VALUES ('10.0.0.3', 'IPv4', 1, 'static-owner', '{"port": 53}', now(), 3),
       ('10.0.0.100', 'IPv4', 1, 'dynamic-owner', '{}', now(), 4),
       ('fd00::ffff:ffff:ffff:fffe', 'IPv6', 2, 'far-owner', '{}', now(), 5);
INSERT INTO event (revision, type, payload)
SELECT n, CASE WHEN n <= 2 THEN 'RANGE_ADDED' ELSE 'ALLOCATED' END,
       json_build_object('type', 'placeholder', 'revision', n)
FROM generate_series(1, 5) AS n;
UPDATE log_head SET revision = 5;
"""


@pytest.fixture
async def old_database(database_url: str) -> AsyncIterator[str]:
    """A database of its own, at migration 0001 and holding the previous version's data."""
    name = f"allocator_upgrade_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(database_url).set(database=name).render_as_string(False)
    engine = create_engine(url, Settings(database_url=url, pool_size=2))

    def to_previous(connection: Connection) -> None:
        command.upgrade(migration.alembic_config(connection), "0001")
        for statement in migration.statements(PREVIOUS_VERSION_DATA):
            connection.exec_driver_sql(statement)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(to_previous)
        yield url
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_upgrade_keeps_allocations_blocks_events_and_revisions(old_database: str) -> None:
    settings = Settings(database_url=old_database, pool_size=4)
    engine: AsyncEngine = create_engine(old_database, settings)
    pool: Any = await create_pool(old_database, settings)
    try:
        await migration.upgrade(engine)
        async with engine.connect() as connection:
            ranges = (
                await connection.execute(
                    text("SELECT name, size, allocated, static_allocated FROM ip_range ORDER BY id")
                )
            ).all()
            events = (await connection.execute(text("SELECT count(*) FROM event"))).scalar_one()
        assert [tuple(r) for r in ranges] == [
            ("old-v4", 254, 2, 1),
            ("old-v6", 2**64 - 1, 1, 0),
        ], "sizes computed, the static band's count taken from its block"
        assert events == 5
        before = await assert_consistent(engine)
        assert len(before) == 3

        allocator = Allocator(pool)
        retry, created = await allocator.allocate(AllocationRequest(owner="static-owner"))
        assert (str(retry.ip), created, retry.revision, retry.metadata) == (
            "10.0.0.3",
            False,
            3,
            {"port": 53},
        ), "an allocation of the previous version is held as it was"
        fresh, created = await allocator.allocate(AllocationRequest(owner="new", range="old-v4"))
        assert created and fresh.revision == 6, "revisions go on from the old head"
        far, revision = await allocator.release(netaddr.IPAddress("fd00::ffff:ffff:ffff:fffe"))
        assert (far.owner, revision) == ("far-owner", 7)
        released = await allocator.release_owner("static-owner")
        assert [str(a.ip) for a, _ in released] == ["10.0.0.3"]
        assert await assert_consistent(engine) == {netaddr.IPAddress("10.0.0.100"), fresh.ip}
    finally:
        await pool.close()
        await engine.dispose()


# Revision 0004's own write path wrote these: a range, two allocations and a release.
REVISION_0004_DATA = """
INSERT INTO ip_range (name, cidr, family, size, static_size, created_at, revision)
VALUES ('v4', '10.1.0.0/24', 'IPv4', 254, 16, now(), 0);
INSERT INTO bitmap_block (range_id, band, block_no, bits, free)
SELECT id, band, 0, decode(repeat('00', (n + 7) / 8), 'hex'), n
FROM ip_range, (VALUES (0, 16), (1, 238)) AS b(band, n);
SELECT count(*) FROM allocator_write(ARRAY['allocate', 'allocate', 'release'],
                                     ARRAY['a', 'b', NULL], ARRAY[NULL, '10.1.0.9', '10.1.0.9']::inet[],
                                     ARRAY['v4', NULL, NULL], ARRAY[NULL, NULL, NULL]::text[],
                                     ARRAY['{}', '{}', NULL]::jsonb[]);
"""


@contextlib.asynccontextmanager
async def upgraded_from(
    database_url: str, revision: str, data: str
) -> AsyncIterator[tuple[AsyncEngine, Any]]:
    """A database of its own at migration ``revision`` holding ``data`` (SQL that revision's
    own functions run), upgraded to the newest; yield its engine and request pool."""
    name = f"allocator_upgrade_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(database_url).set(database=name).render_as_string(False)
    settings = Settings(database_url=url, pool_size=2)
    engine = create_engine(url, settings)

    def to_revision(connection: Connection) -> None:
        command.upgrade(migration.alembic_config(connection), revision)
        for statement in migration.statements(data):
            connection.exec_driver_sql(statement)

    pool: Any = None
    try:
        async with engine.begin() as connection:
            await connection.run_sync(to_revision)
        await migration.upgrade(engine)
        pool = await create_pool(url, settings)
        yield engine, pool
    finally:
        if pool is not None:
            await pool.close()
        await engine.dispose()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_upgrade_from_0004_keeps_the_write_path_data_and_adds_cool_down(
    database_url: str,
) -> None:
    async with upgraded_from(database_url, "0004", REVISION_0004_DATA) as (engine, pool):
        async with engine.connect() as connection:
            document = (
                await connection.execute(text("SELECT range_json(r) FROM ip_range r"))
            ).scalar_one()
        assert (document["allocated"], document["cooling"], document["free"]) == (1, 0, 253)
        assert document["release_cooldown_seconds"] == 0
        before = await assert_consistent(engine)
        allocator = Allocator(pool)
        held, created = await allocator.allocate(AllocationRequest(owner="a"))
        assert (created, held.revision, {held.ip}) == (False, 1, before)
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE ip_range SET release_cooldown_seconds = 60"))
        _, revision = await allocator.release(held.ip)
        assert revision == 4, "revisions go on from the old head"
        assert await assert_consistent(engine) == set()
        async with engine.connect() as connection:
            cooling = (await connection.execute(text("SELECT cooling FROM ip_range"))).scalar_one()
        assert cooling == 1


# Revision 0005's own write path wrote these: two ranges (one with a cool-down), allocations, and
# a release that cools down.
REVISION_0005_DATA = """
INSERT INTO ip_range (name, cidr, family, size, static_size, release_cooldown_seconds,
                      created_at, revision)
VALUES ('v4', '10.1.1.0/24', 'IPv4', 254, 16, 600, now(), 0),
       ('v6', 'fd00:1::/120', 'IPv6', 255, 16, 0, now(), 0);
INSERT INTO bitmap_block (range_id, band, block_no, bits, free)
SELECT r.id, b.band, 0, decode(repeat('00', (b.n + 7) / 8), 'hex'), b.n
FROM ip_range r, (VALUES (0, 16), (1, 238)) AS b(band, n)
WHERE r.name = 'v4'
UNION ALL
SELECT r.id, b.band, 0, decode(repeat('00', (b.n + 7) / 8), 'hex'), b.n
FROM ip_range r, (VALUES (0, 16), (1, 239)) AS b(band, n)
WHERE r.name = 'v6';
SELECT count(*) FROM allocator_write(ARRAY['allocate', 'allocate', 'allocate', 'release'],
                                     ARRAY['a', 'b', 'c', NULL],
                                     ARRAY[NULL, '10.1.1.9', NULL, '10.1.1.9']::inet[],
                                     ARRAY['v4', NULL, 'v6', NULL],
                                     ARRAY[NULL, NULL, NULL, NULL]::text[],
                                     ARRAY['{}', '{}', '{}', NULL]::jsonb[]);
"""


async def test_upgrade_from_0005_keeps_cooling_addresses_and_ranges_can_resize_and_drain(
    database_url: str,
) -> None:
    async with upgraded_from(database_url, "0005", REVISION_0005_DATA) as (engine, pool):
        async with engine.connect() as connection:
            documents = (
                (
                    await connection.execute(
                        text("SELECT range_json(r) FROM ip_range r ORDER BY name")
                    )
                )
                .scalars()
                .all()
            )
        assert [(d["allocated"], d["cooling"], d["allocatable"]) for d in documents] == [
            (1, 1, True),
            (1, 0, True),
        ]
        before = await assert_consistent(engine)
        allocator = Allocator(pool)
        held, created = await allocator.allocate(AllocationRequest(owner="a"))
        assert (created, {held.ip} < before) == (False, True)
        await ranges.change_range(engine, "v4", ranges.RangeChange(cidr="10.1.0.0/22"))
        await ranges.change_range(engine, "v6", ranges.RangeChange(allocatable=False))
        assert await assert_consistent(engine) == before, "kept through the resize"
        with pytest.raises(RangeNotAllocatable):
            await allocator.allocate(AllocationRequest(owner="d", range="v6"))
        back, created = await allocator.allocate(AllocationRequest(owner="b", ip=IP("10.1.1.9")))
        assert created and back.ip == IP("10.1.1.9"), "the cooling address is its releaser's"
        assert (await ranges.get_range(engine, "v4")).cooling == 0
        async with engine.connect() as connection:
            head = (await connection.execute(text("SELECT revision FROM log_head"))).scalar_one()
        assert head == 4 + 3, "revisions go on from the old head"


async def test_0006_downgrades_to_0005_and_upgrades_again_with_the_data(database_url: str) -> None:
    async with upgraded_from(database_url, "0005", REVISION_0005_DATA) as (engine, pool):
        await ranges.change_range(engine, "v6", ranges.RangeChange(allocatable=False))
        before = await assert_consistent(engine)

        def down_and_up(connection: Connection) -> list[str]:
            command.downgrade(migration.alembic_config(connection), "0005")
            names = connection.exec_driver_sql(
                "SELECT name FROM ip_range WHERE allocated - static_allocated < size - static_size"
                " ORDER BY family, name"
            )
            found = [row[0] for row in names]
            command.upgrade(migration.alembic_config(connection), "head")
            return found

        async with engine.begin() as connection:
            assert await connection.run_sync(down_and_up) == ["v4", "v6"]
        assert await assert_consistent(engine) == before
        async with pool.acquire() as connection:
            documents = await connection.fetch(
                "SELECT range_json(r) AS doc FROM ip_range r ORDER BY name"
            )
        assert [orjson.loads(d["doc"])["allocatable"] for d in documents] == [True, True], (
            "a drained range serves again after a downgrade"
        )
        held, created = await Allocator(pool).allocate(AllocationRequest(owner="e", range="v6"))
        assert created and held.range == "v6"


async def downgrade(engine: AsyncEngine, target: str) -> None:
    def run(connection: Connection) -> None:
        command.downgrade(migration.alembic_config(connection), target)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def test_0007_downgrades_to_0006_and_upgrades_again_with_the_data(database_url: str) -> None:
    async with upgraded_from(database_url, "0005", REVISION_0005_DATA) as (engine, pool):
        allocator = Allocator(pool)
        before = await assert_consistent(engine)
        await downgrade(engine, "0006")
        older, _ = await allocator.allocate(AllocationRequest(owner="on-0006", range="v4"))
        static, _ = await allocator.allocate(AllocationRequest(owner="s", ip=IP("10.1.1.7")))
        await migration.upgrade(engine)
        newer, created = await allocator.allocate(AllocationRequest(owner="on-0007", range="v4"))
        assert created and newer.revision == older.revision + 2
        released, _ = await allocator.release(static.ip, "s")
        assert released.revision == static.revision
        assert await assert_consistent(engine) == before | {older.ip, newer.ip}


async def test_0008_downgrades_to_0007_and_upgrades_again_with_the_data(database_url: str) -> None:
    async with upgraded_from(database_url, "0005", REVISION_0005_DATA) as (engine, pool):
        allocator = Allocator(pool)
        before = await assert_consistent(engine)

        async def settings() -> list[str]:
            async with pool.acquire() as connection:
                found: list[str] = await connection.fetchval(
                    "SELECT proconfig FROM pg_proc WHERE proname = 'allocator_write'"
                )
            return found

        await downgrade(engine, "0007")
        assert await settings() == ["plan_cache_mode=force_generic_plan"]
        older, _ = await allocator.allocate(AllocationRequest(owner="on-0007", range="v4"))
        await migration.upgrade(engine)
        assert "enable_seqscan=off" in await settings()
        newer, created = await allocator.allocate(AllocationRequest(owner="on-0008", range="v4"))
        assert created and newer.revision == older.revision + 1
        assert await assert_consistent(engine) == before | {older.ip, newer.ip}
