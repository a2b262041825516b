"""Cool-down on two server processes: refused to others and allowed to the releasing owner on
either replica, kept across a restart, and ended with no request arriving."""

import asyncio
import time

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.server import running_server
from tests.integration.consistency import assert_consistent

COOLDOWN = 600
SWEEP = {"ALLOCATOR_COOLDOWN_SWEEP_SECONDS": "0.2"}


async def cooling_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(
            (await connection.execute(text("SELECT count(*) FROM cooling_address"))).scalar_one()
        )


async def test_cool_down_on_two_replicas_survives_a_restart_and_ends_by_itself(
    engine: AsyncEngine, database_url: str
) -> None:
    with (
        running_server(database_url, **SWEEP) as first,
        running_server(database_url, **SWEEP) as second,
    ):
        async with httpx.AsyncClient(timeout=30) as http:
            created = await http.post(
                f"{first}/v1/ranges",
                json={"name": "cool", "cidr": "10.0.0.0/28", "release_cooldown_seconds": COOLDOWN},
            )
            assert created.status_code == 201, created.text
            taken = []
            for n in range(14):
                response = await http.post(
                    f"{(first, second)[n % 2]}/v1/allocations", json={"owner": f"s{n}"}
                )
                assert response.status_code == 201
                taken.append(response.json()["ip"])
            for n in range(3):
                released = await http.delete(
                    f"{second}/v1/allocations/{taken[n]}", params={"owner": f"s{n}"}
                )
                assert released.status_code == 204
            state = (await http.get(f"{first}/v1/ranges/cool")).json()
            assert (state["allocated"], state["cooling"], state["free"]) == (11, 3, 0)
            full = await http.post(f"{first}/v1/allocations", json={"owner": "newcomer"})
            assert full.status_code == 409
            assert full.json()["type"] == "range-full", "every free address is cooling"
            other = await http.post(
                f"{first}/v1/allocations", json={"owner": "newcomer", "ip": taken[0]}
            )
            assert other.status_code == 409
            assert other.json()["type"] == "ip-cooling-down"
            assert other.json()["released_by"] == "s0"
            back = await http.post(f"{second}/v1/allocations", json={"owner": "s0", "ip": taken[0]})
            assert back.status_code == 201, back.text
    # Both replicas stopped during the cool-down: it is in the database, not in a process.
    assert await cooling_rows(engine) == 2
    with running_server(database_url, **SWEEP) as third:
        async with httpx.AsyncClient(timeout=30) as http:
            refused = await http.post(
                f"{third}/v1/allocations", json={"owner": "x", "ip": taken[1]}
            )
            assert refused.json()["type"] == "ip-cooling-down"
            # As if the ten minutes were nearly over: one second is left.
            async with engine.begin() as connection:
                await connection.execute(
                    text("UPDATE cooling_address SET available_at = now() + interval '1 second'")
                )
            ends_at = time.monotonic() + 1
            # No request from here on: the server ends the cool-down by itself.
            while await cooling_rows(engine) and time.monotonic() < ends_at + 10:  # noqa: ASYNC110
                await asyncio.sleep(0.1)  # the database is polled, not the server
            assert await cooling_rows(engine) == 0
            assert time.monotonic() >= ends_at - 0.2, "not before its time"
            state = (await http.get(f"{third}/v1/ranges/cool")).json()
            assert (state["allocated"], state["cooling"], state["free"]) == (12, 0, 2)
            again = await http.post(f"{third}/v1/allocations", json={"owner": "x", "ip": taken[1]})
            assert again.status_code == 201, "free for everyone after its cool-down"
    await assert_consistent(engine)
