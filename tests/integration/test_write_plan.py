"""The write function plans nothing on each call: the SQL helpers it calls are inlined.

A SQL function that Postgres does not inline is planned again by every statement that calls it
(migration 0007): declaring one IMMUTABLE over a STABLE body silently puts that cost back on
every write. The plans it keeps are made once per connection, so they must read by index
whatever the tables held when they were made (migration 0008).
"""

from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.service import ranges
from allocator.store.write import Kind, Operation, write, write_batch

INLINED = ("allocator_json", "allocator_time", "allocator_extension")


async def test_every_kind_of_write_calls_none_of_the_inlined_helpers(
    engine: AsyncEngine, pool: Any
) -> None:
    await ranges.create_range(engine, "plan", "10.77.0.0/24")
    operations = [
        Operation(Kind.ALLOCATE, "dynamic", range="plan", metadata="{}"),
        Operation(Kind.ALLOCATE, "static", ip="10.77.0.5", metadata='{"a": 1}'),
        Operation(Kind.ALLOCATE, "static", ip="10.77.0.6", metadata="{}"),  # owner-has-allocation
        Operation(Kind.ALLOCATE, "taken", ip="10.77.0.5", metadata="{}"),  # ip-already-allocated
        Operation(Kind.RELEASE, "static", "10.77.0.5"),
        Operation(Kind.RELEASE_OWNER, "dynamic"),
    ]
    async with pool.acquire() as connection:
        await connection.execute("SET track_functions = 'all'")
        # One transaction, so that its function statistics can be read before it ends.
        async with connection.transaction():
            outcomes = [(await write(connection, [o]))[0] for o in operations]
            calls = dict(
                await connection.fetch(
                    "SELECT funcname, calls FROM pg_stat_xact_user_functions"
                    " WHERE funcname LIKE 'allocator%'"
                )
            )
            await connection.execute("SET LOCAL track_functions = 'none'")
        await connection.execute("RESET track_functions")
    assert [o.status for o in outcomes] == [201, 201, 409, 409, 204, 200]
    assert calls.get("allocator_write") == len(operations), "the statistics count calls"
    assert {name: calls[name] for name in INLINED if name in calls} == {}


async def test_the_write_function_plans_its_statements_once_per_connection(pool: Any) -> None:
    async with pool.acquire() as connection:
        settings = await connection.fetchval(
            "SELECT proconfig FROM pg_proc WHERE proname = 'allocator_write'"
        )
    assert settings == [
        "plan_cache_mode=force_generic_plan",
        "enable_seqscan=off",
        "enable_hashjoin=off",
        "enable_mergejoin=off",
        "jit=off",
    ]


TABLES = ("allocation", "bitmap_block", "cooling_address", "event")


def every_kind(n: int) -> list[Operation]:
    """A dynamic allocation naming its range and one naming none, a static one, its guarded
    release and a release of all of an owner's allocations."""
    ip = f"10.78.0.{5 + n}"
    return [
        Operation(Kind.ALLOCATE, f"named-{n}", range="grow", metadata="{}"),
        Operation(Kind.ALLOCATE, f"unnamed-{n}", metadata="{}"),
        Operation(Kind.ALLOCATE, f"static-{n}", ip=ip, metadata="{}"),
        Operation(Kind.RELEASE, f"static-{n}", ip),
        Operation(Kind.RELEASE_OWNER, f"named-{n}"),
    ]


async def test_plans_made_on_empty_tables_read_them_by_index_once_they_are_large(
    engine: AsyncEngine, pool: Any, database_url: str
) -> None:
    await ranges.create_range(engine, "grow", "10.78.0.0/16")
    planned = await asyncpg.connect(database_url)
    try:
        # Its plans are made now, on tables whose statistics say they hold nothing.
        await planned.execute(f"VACUUM ANALYZE {', '.join(TABLES)}")
        first = [(await write(planned, [o]))[0].status for o in every_kind(0)]
        async with pool.acquire() as filler:
            for batch in range(4):
                fill = [
                    Operation(Kind.ALLOCATE, f"fill-{batch}-{n}", range="grow", metadata="{}")
                    for n in range(1000)
                ]
                outcomes, _ = await write_batch(filler, fill, atomic=False, patient=True)
                assert {o.status for o in outcomes} == {201}
        # One transaction, so that its table statistics can be read before it ends.
        async with planned.transaction():
            later = [(await write(planned, [o]))[0].status for o in every_kind(1)]
            read = {
                row["relname"]: (row["seq_scan"], row["idx_tup_fetch"])
                for row in await planned.fetch(
                    "SELECT relname, seq_scan, idx_tup_fetch FROM pg_stat_xact_user_tables"
                    " WHERE relname = ANY($1::text[])",
                    TABLES,
                )
            }
    finally:
        await planned.close()
    assert first == later == [201, 201, 201, 204, 200]
    assert {table: scans for table, (scans, _) in read.items()} == dict.fromkeys(TABLES, 0)
    # A few rows each, not thousands: no index is walked whole either.
    assert all(fetched < 50 for _, fetched in read.values()), read
