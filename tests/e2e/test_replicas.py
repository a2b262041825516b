"""Two server processes against one database: one allocator, whatever replica is asked."""

import asyncio

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.server import running_server
from tests.integration.consistency import assert_consistent

CLIENTS = 16


async def test_two_replicas_fill_one_range_without_duplicates(
    engine: AsyncEngine, database_url: str
) -> None:
    with running_server(database_url) as first, running_server(database_url) as second:
        async with httpx.AsyncClient(timeout=30) as http:
            created = await http.post(
                f"{first}/v1/ranges", json={"name": "small", "cidr": "10.0.0.0/26"}
            )
            assert created.status_code == 201
            size = created.json()["size"]
            acknowledged: list[str] = []
            statuses: list[int] = []

            async def client(n: int) -> None:
                base = (first, second)[n % 2]
                for attempt in range(8):
                    response = await http.post(
                        f"{base}/v1/allocations", json={"owner": f"c{n}-{attempt}"}
                    )
                    statuses.append(response.status_code)
                    if response.status_code == 201:
                        acknowledged.append(response.json()["ip"])
                    else:
                        assert response.json()["type"] == "range-full", response.text

            await asyncio.gather(*(client(n) for n in range(CLIENTS)))
            assert len(acknowledged) == size == 62
            assert len(set(acknowledged)) == size, "no address acknowledged twice"
            assert statuses.count(409) == CLIENTS * 8 - size
            via_second = (await http.get(f"{second}/v1/ranges/small")).json()
            assert (via_second["allocated"], via_second["free"]) == (size, 0)
    assert {str(ip) for ip in await assert_consistent(engine)} == set(acknowledged)
