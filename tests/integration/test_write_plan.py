"""The write function plans nothing on each call: the SQL helpers it calls are inlined.

A SQL function that Postgres does not inline is planned again by every statement that calls it
(migration 0007): declaring one IMMUTABLE over a STABLE body silently puts that cost back on
every write.
"""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.service import ranges
from allocator.store.write import Kind, Operation, write

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
    assert settings == ["plan_cache_mode=force_generic_plan"]
