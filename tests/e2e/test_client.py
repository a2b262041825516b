"""The Python client against a real server process."""

from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.client import AllocatorClient, ProblemError, ServerUnreachable
from tests.e2e.server import free_port, running_server


@pytest.fixture
def api(engine: AsyncEngine, database_url: str) -> Iterator[AllocatorClient]:
    with running_server(database_url) as url, AllocatorClient(url) as client:
        yield client


def test_every_call_round_trips(api: AllocatorClient) -> None:
    created = api.create_range("default-ipv4", "10.96.0.0/24")
    assert api.get_range("default-ipv4") == created
    assert api.list_ranges() == [created]
    first = api.allocate("default/a", metadata={"endpoints": []})
    assert api.allocate("default/a") == first, "a retry returns the same allocation"
    static = api.allocate("default/b", ip="10.96.0.10")
    assert api.get_allocation("10.96.0.10") == static
    assert [a["ip"] for a in api.iter_allocations()] == sorted(
        [first["ip"], static["ip"]], key=lambda ip: tuple(map(int, ip.split(".")))
    )
    page = api.list_allocations(limit=1)
    assert len(page["items"]) == 1
    assert page["next_cursor"] is not None
    api.release("10.96.0.10", owner="default/b")
    assert api.release_owner("default/a") == [first]
    api.delete_range("default-ipv4")
    assert api.list_ranges() == []


def test_refusals_carry_the_problem_document(api: AllocatorClient) -> None:
    api.create_range("default-ipv4", "10.96.0.0/24")
    api.allocate("a", ip="10.96.0.10")
    with pytest.raises(ProblemError) as refused:
        api.allocate("b", ip="10.96.0.10")
    assert (refused.value.status, refused.value.type) == (409, "ip-already-allocated")
    assert refused.value.problem["holder"] == "a"
    with pytest.raises(ProblemError, match="range-not-found"):
        api.get_range("nope")


def test_unreachable_server_is_one_clear_error() -> None:
    with (
        AllocatorClient(f"http://127.0.0.1:{free_port()}", timeout=2) as client,
        pytest.raises(ServerUnreachable),
    ):
        client.list_ranges()
