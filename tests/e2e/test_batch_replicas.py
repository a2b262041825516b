"""Atomic dual-stack batches racing on two server processes for small IPv4 and IPv6 ranges: no
address held twice, no owner with one family only, and refused batches leave nothing behind."""

import asyncio
from collections import Counter

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.server import running_server
from tests.integration.consistency import assert_consistent

CLIENTS = 12
BATCHES_PER_CLIENT = 4


async def test_concurrent_atomic_dual_stack_batches_on_two_replicas(
    engine: AsyncEngine, database_url: str
) -> None:
    with running_server(database_url) as first, running_server(database_url) as second:
        async with httpx.AsyncClient(timeout=60) as http:
            # 14 IPv4 addresses and 15 IPv6: more owners ask than either family can serve.
            for name, cidr in (("v4", "10.0.0.0/28"), ("v6", "fd00::/124")):
                response = await http.post(f"{first}/v1/ranges", json={"name": name, "cidr": cidr})
                assert response.status_code == 201
            granted: dict[str, list[str]] = {}
            refused: list[str] = []
            statuses: Counter[int] = Counter()

            async def client(n: int) -> None:
                for k in range(BATCHES_PER_CLIENT):
                    owner = f"svc-{n}-{k}"
                    families = ["IPv6", "IPv4"] if (n + k) % 2 else ["IPv4", "IPv6"]
                    body = {"requests": [{"owner": owner, "family": f} for f in families]}
                    response = await http.post(
                        f"{(first, second)[n % 2]}/v1/allocations:batch", json=body
                    )
                    statuses[response.status_code] += 1
                    if response.status_code == 200:
                        results = response.json()["results"]
                        assert [r["status"] for r in results] == [201, 201]
                        revisions = [r["allocation"]["revision"] for r in results]
                        assert revisions[1] == revisions[0] + 1, "consecutive revisions"
                        granted[owner] = [r["allocation"]["ip"] for r in results]
                    else:
                        problem = response.json()
                        assert (response.status_code, problem["type"]) == (409, "batch-failed"), (
                            problem
                        )
                        assert {e["problem"]["type"] for e in problem["errors"]} == {"range-full"}
                        refused.append(owner)

            await asyncio.gather(*(client(n) for n in range(CLIENTS)))
            assert statuses[200] == len(granted) == 14, "every IPv4 address went to one batch"
            assert len(refused) == CLIENTS * BATCHES_PER_CLIENT - 14
            held = [ip for pair in granted.values() for ip in pair]
            assert len(held) == len(set(held)), "no address held twice"
            listed = (await http.get(f"{second}/v1/allocations")).json()
            by_owner: dict[str, set[str]] = {}
            for allocation in listed["items"]:
                by_owner.setdefault(allocation["owner"], set()).add(allocation["family"])
            assert set(by_owner) == set(granted), "a refused batch's owner holds nothing"
            assert all(families == {"IPv4", "IPv6"} for families in by_owner.values())
            v6 = (await http.get(f"{first}/v1/ranges/v6")).json()
            assert (v6["allocated"], v6["free"]) == (14, 1), "refused batches left no count"
    assert len(await assert_consistent(engine)) == 28, "bits, rows and counts agree"
    async with engine.connect() as connection:
        events = (await connection.execute(text("SELECT count(*) FROM event"))).scalar_one()
    assert events == 2 + 28, "two ranges and two allocations per granted batch: no other event"
