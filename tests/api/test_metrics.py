"""GET /metrics after a scripted sequence: every family, with the values the sequence implies."""

from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

from allocator.api.app import create_app
from allocator.settings import Settings

Samples = Mapping[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


async def test_metrics_after_a_scripted_sequence(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await client.post("/v1/ranges", json={"name": "a", "cidr": "10.0.0.0/24"})
    await client.post("/v1/ranges", json={"name": "b", "cidr": "fd00::/120"})
    for owner in ("x", "y", "z"):
        assert (await client.post("/v1/allocations", json={"owner": owner})).status_code == 201
    assert (await client.post("/v1/allocations", json={"owner": "x"})).status_code == 200
    static = await client.post("/v1/allocations", json={"owner": "s", "ip": "10.0.0.5"})
    assert static.status_code == 201
    taken = await client.post("/v1/allocations", json={"owner": "t", "ip": "10.0.0.5"})
    assert taken.status_code == 409
    v6 = await client.post("/v1/allocations", json={"owner": "x", "family": "IPv6"})
    assert v6.status_code == 201
    assert (await client.delete("/v1/allocations/10.0.0.5")).status_code == 204
    full = await client.post("/v1/allocations", json={"owner": "u", "range": "nope"})
    assert full.status_code == 404

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert value(found, "allocator_allocated_ips", range="a") == 3
    assert value(found, "allocator_available_ips", range="a") == 251
    assert value(found, "allocator_allocated_ips", range="b") == 1
    assert value(found, "allocator_available_ips", range="b") == 254
    assert value(found, "allocator_event_revision") == 2 + 5 + 1
    assert value(found, "allocator_database_up") == 1
    assert value(found, "allocator_allocation_total", range="a", scope="dynamic") == 3
    assert value(found, "allocator_allocation_total", range="a", scope="static") == 1
    assert value(found, "allocator_allocation_total", range="b", scope="dynamic") == 1
    assert (
        value(
            found,
            "allocator_allocation_errors_total",
            range="",
            scope="static",
            reason="ip-already-allocated",
        )
        == 1
    )
    assert (
        value(
            found,
            "allocator_allocation_errors_total",
            range="nope",
            scope="dynamic",
            reason="range-not-found",
        )
        == 1
    )
    assert value(found, "allocator_allocation_duration_seconds_count", scope="dynamic") == 6
    assert value(found, "allocator_allocation_duration_seconds_count", scope="static") == 2
    assert value(found, "allocator_release_total", range="a") == 1
    assert value(found, "allocator_watchers") == 0
    post = {"method": "POST", "route": "/v1/allocations"}
    assert value(found, "allocator_http_requests_total", **post, status="201") == 5
    assert value(found, "allocator_http_requests_total", **post, status="200") == 1
    assert value(found, "allocator_http_requests_total", **post, status="409") == 1
    assert value(found, "allocator_http_requests_total", **post, status="404") == 1
    release = {"method": "DELETE", "route": "/v1/allocations/{ip}"}
    assert value(found, "allocator_http_requests_total", **release, status="204") == 1
    assert value(found, "allocator_http_request_duration_seconds_count", **release) == 1
    assert not any("10.0.0.5" in labels for _, labels in found), "templates, not raw paths"

    # A second app (another replica) has counters of its own but the same gauges.
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as replica:
            theirs = samples((await replica.get("/metrics")).text)
    assert value(theirs, "allocator_allocated_ips", range="a") == 3
    assert value(theirs, "allocator_event_revision") == 8
    assert value(theirs, "allocator_allocation_total", range="a", scope="dynamic") is None


async def test_deleted_ranges_leave_the_gauges(client: httpx.AsyncClient) -> None:
    await client.post("/v1/ranges", json={"name": "gone", "cidr": "10.1.0.0/24"})
    assert (
        value(samples((await client.get("/metrics")).text), "allocator_allocated_ips", range="gone")
        == 0
    )
    await client.delete("/v1/ranges/gone")
    assert (
        value(samples((await client.get("/metrics")).text), "allocator_allocated_ips", range="gone")
        is None
    )


async def test_cooling_gauge_and_batch_sizes(client: httpx.AsyncClient) -> None:
    body = {"name": "c", "cidr": "10.1.0.0/24", "release_cooldown_seconds": 600}
    await client.post("/v1/ranges", json=body)
    batch = {"requests": [{"owner": f"o{n}"} for n in range(5)]}
    assert (await client.post("/v1/allocations:batch", json=batch)).status_code == 200
    refused = {"requests": [{"owner": "p"}, {"owner": "q", "range": "nope"}]}
    assert (await client.post("/v1/allocations:batch", json=refused)).status_code == 404
    assert (await client.delete("/v1/allocations", params={"owner": "o1"})).status_code == 200
    found = samples((await client.get("/metrics")).text)
    assert value(found, "allocator_cooling_ips", range="c") == 1
    assert value(found, "allocator_allocated_ips", range="c") == 4
    assert value(found, "allocator_available_ips", range="c") == 249
    assert value(found, "allocator_batch_requests_count") == 2
    assert value(found, "allocator_batch_requests_sum") == 7
    assert value(found, "allocator_batch_requests_bucket", le="5.0") == 2
    assert value(found, "allocator_batch_errors_total", reason="batch-failed") == 1
    assert value(found, "allocator_allocation_total", range="c", scope="dynamic") == 5


async def test_a_resize_and_a_drain_show_in_the_range_gauges(client: httpx.AsyncClient) -> None:
    await client.post("/v1/ranges", json={"name": "a", "cidr": "10.0.0.0/24"})
    before = samples((await client.get("/metrics")).text)
    assert (
        value(before, "allocator_range_size", range="a"),
        value(before, "allocator_range_allocatable", range="a"),
    ) == (254, 1)
    await client.patch("/v1/ranges/a", json={"cidr": "10.0.0.0/23", "allocatable": False})
    after = samples((await client.get("/metrics")).text)
    assert value(after, "allocator_range_size", range="a") == 510
    assert value(after, "allocator_available_ips", range="a") == 510
    assert value(after, "allocator_range_allocatable", range="a") == 0
