"""Resize and drain against real server processes: racing clients on two replicas, the CLI, and
the client's watch state."""

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.client.watch import Watch
from allocator.service.verify import verify
from tests.e2e.load import (
    Ledger,
    Replicas,
    check_acknowledged_kept,
    check_no_double_holding,
    client,
    replay_event_log,
)
from tests.e2e.server import running_server
from tests.e2e.test_cli import run
from tests.integration.consistency import assert_consistent

CLIENTS = 16
SIZES = ("10.70.0.0/23", "10.70.0.0/22", "10.70.0.0/23", "10.70.0.0/21", "10.70.0.0/22")


async def test_resizes_racing_clients_on_two_replicas(
    engine: AsyncEngine, database_url: str
) -> None:
    with running_server(database_url) as first, running_server(database_url) as second:
        async with httpx.AsyncClient(timeout=60) as http:
            created = await http.post(
                f"{first}/v1/ranges", json={"name": "r", "cidr": "10.70.0.0/24"}
            )
            assert created.status_code == 201
            ledger = Ledger()
            replicas = Replicas([first, second], http, ledger)
            pool = [f"10.70.0.{n}" for n in range(1, 255, 3)]
            deadline = time.monotonic() + 8
            resized: list[int] = []

            async def resizer() -> None:
                for n, cidr in enumerate(SIZES * 3):
                    await asyncio.sleep(0.25)
                    base = (first, second)[n % 2]
                    response = await http.patch(f"{base}/v1/ranges/r", json={"cidr": cidr})
                    resized.append(response.status_code)
                    # A shrink is refused while an address beyond it is held.
                    if response.status_code == 409:
                        assert response.json()["type"] == "allocations-outside-range"
                    else:
                        assert response.status_code == 200, response.text

            await asyncio.gather(
                resizer(),
                *(client(n, replicas, 10_000, pool, deadline) for n in range(CLIENTS)),
            )
    assert resized[:2] == [200, 200] and resized.count(200) >= 4, resized
    assert ledger.acknowledged() > 100
    assert ledger.statuses[503] == 0, "no request failed because of a resize"
    check_no_double_holding(ledger)
    await check_acknowledged_kept(engine, ledger)
    await replay_event_log(engine)
    await assert_consistent(engine)
    report = await verify(engine)
    assert report.consistent, report.document()


@pytest.fixture
def server(engine: AsyncEngine, database_url: str) -> Iterator[str]:
    with running_server(database_url) as url:
        yield url


def test_the_cli_resizes_drains_and_resumes(server: str) -> None:
    def cli(*args: str) -> str:
        result = run(*args, "--server", server)
        assert result.exit_code == 0, result.output
        return result.stdout

    cli("ranges", "create", "small", "10.71.1.0/24")
    cli("ip", "allocate", "--owner", "a", "--ip", "10.71.1.9")
    grown = json.loads(cli("ranges", "resize", "small", "10.71.0.0/22", "-o", "json"))
    assert (grown["cidr"], grown["size"], grown["allocated"]) == ("10.71.0.0/22", 1022, 1)
    assert "serving" in cli("ranges", "list")
    drained = cli("ranges", "drain", "small")
    assert "drained" in drained
    assert "drained" in cli("ranges", "list")
    assert "drained" in cli("ranges", "show", "small")
    refused = run("ip", "allocate", "--owner", "b", "--range", "small", "--server", server)
    assert refused.exit_code == 1 and "range-not-allocatable" in refused.stderr
    assert "serving" in cli("ranges", "resume", "small")
    cli("ip", "release", "10.71.1.9")
    shrunk = run("ranges", "resize", "small", "10.71.2.0/24", "--server", server)
    assert shrunk.exit_code == 0, shrunk.output
    outside = run("ip", "allocate", "--owner", "c", "--ip", "10.71.3.1", "--server", server)
    assert outside.exit_code == 1
    cli("ip", "allocate", "--owner", "c", "--ip", "10.71.2.1")
    stranding = run("ranges", "resize", "small", "10.71.2.128/25", "--server", server)
    assert stranding.exit_code == 1 and "allocations-outside-range" in stranding.stderr


def test_the_watch_state_takes_a_range_update(server: str) -> None:
    with httpx.Client(base_url=server) as api:
        api.post("/v1/ranges", json={"name": "r", "cidr": "10.72.0.0/24"})
        watch = Watch(server)
        events = iter(watch)
        while not next(events).get("initial_end"):
            pass
        assert watch.state.ranges["r"]["cidr"] == "10.72.0.0/24"
        changed = api.patch("/v1/ranges/r", json={"cidr": "10.72.0.0/23", "allocatable": False})
        event = next(e for e in events if e["type"] != "BOOKMARK")
        watch.close()
    assert event["type"] == "RANGE_UPDATED"
    assert watch.state.ranges["r"] == changed.json() == event["range"]
    assert watch.state.revision == event["revision"]
