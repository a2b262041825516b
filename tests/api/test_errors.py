"""Every refusal of docs/api.md, through HTTP: status, problem type and extension members."""

import httpx
import pytest

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, type_: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert (body["type"], body["status"]) == (type_, status)
    assert body["title"]
    assert body["detail"]
    return body


@pytest.fixture
async def default(client: httpx.AsyncClient) -> dict:
    response = await client.post(
        "/v1/ranges", json={"name": "default-ipv4", "cidr": "10.96.0.0/24"}
    )
    assert response.status_code == 201
    return response.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad_Name", "cidr": "10.0.0.0/24"}, "name"),
        ({"name": "x", "cidr": "10.0.0.5/24"}, "cidr"),
        ({"name": "x", "cidr": "10.0.0.0/31"}, "cidr"),
        ({"name": "x", "cidr": "fd00::/48"}, "cidr"),
        ({"name": "x", "cidr": "10.096.0.0/24"}, "cidr"),
        ({"name": "x"}, "cidr"),
        ({"name": "x", "cidr": 10}, "cidr"),
    ],
)
async def test_invalid_range_requests(client: httpx.AsyncClient, body: dict, field: str) -> None:
    problem = assert_problem(await client.post("/v1/ranges", json=body), 422, "invalid-request")
    assert field in [error["field"] for error in problem["errors"]]


async def test_host_bits_detail_names_the_probable_network(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/ranges", json={"name": "x", "cidr": "10.96.0.5/12"})
    assert "10.96.0.0/12" in assert_problem(response, 422, "invalid-request")["detail"]


async def test_range_conflicts(client: httpx.AsyncClient, default: dict) -> None:
    overlap = await client.post("/v1/ranges", json={"name": "other", "cidr": "10.96.0.128/25"})
    assert assert_problem(overlap, 409, "range-overlaps")["conflicting_range"] == "default-ipv4"
    again = await client.post("/v1/ranges", json={"name": "default-ipv4", "cidr": "10.97.0.0/24"})
    assert_problem(again, 409, "range-exists")


async def test_range_not_found(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/ranges/nope"), 404, "range-not-found")
    assert_problem(await client.delete("/v1/ranges/nope"), 404, "range-not-found")
    response = await client.post("/v1/allocations", json={"owner": "a", "range": "nope"})
    assert_problem(response, 404, "range-not-found")


async def test_range_not_empty(client: httpx.AsyncClient, default: dict) -> None:
    await client.post("/v1/allocations", json={"owner": "a"})
    problem = assert_problem(await client.delete("/v1/ranges/default-ipv4"), 409, "range-not-empty")
    assert problem["allocated"] == 1


async def test_allocation_conflicts(client: httpx.AsyncClient, default: dict) -> None:
    first = await client.post("/v1/allocations", json={"owner": "a", "ip": "10.96.0.10"})
    assert first.status_code == 201
    taken = await client.post("/v1/allocations", json={"owner": "b", "ip": "10.96.0.10"})
    assert assert_problem(taken, 409, "ip-already-allocated")["holder"] == "a"
    other = await client.post("/v1/allocations", json={"owner": "a", "ip": "10.96.0.11"})
    assert assert_problem(other, 409, "owner-has-allocation")["allocation"] == first.json()
    mismatch = await client.delete("/v1/allocations/10.96.0.10", params={"owner": "b"})
    assert assert_problem(mismatch, 409, "owner-mismatch")["holder"] == "a"


@pytest.mark.parametrize("ip", ["10.96.0.0", "10.96.0.255", "10.50.0.1", "fd00::1"])
async def test_ip_not_in_range(client: httpx.AsyncClient, default: dict, ip: str) -> None:
    assert_problem(
        await client.post("/v1/allocations", json={"owner": "a", "ip": ip}), 422, "ip-not-in-range"
    )


async def test_no_range_for_family(client: httpx.AsyncClient, default: dict) -> None:
    response = await client.post("/v1/allocations", json={"owner": "a", "family": "IPv6"})
    assert_problem(response, 422, "no-range-for-family")


async def test_range_full(client: httpx.AsyncClient) -> None:
    await client.post("/v1/ranges", json={"name": "tiny", "cidr": "10.0.0.0/30"})
    for owner in ("a", "b"):
        assert (await client.post("/v1/allocations", json={"owner": owner})).status_code == 201
    assert_problem(await client.post("/v1/allocations", json={"owner": "c"}), 409, "range-full")


async def test_ip_not_allocated(client: httpx.AsyncClient, default: dict) -> None:
    assert_problem(await client.get("/v1/allocations/10.96.0.7"), 404, "ip-not-allocated")
    assert_problem(await client.delete("/v1/allocations/10.96.0.7"), 404, "ip-not-allocated")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "owner"),
        ({"owner": ""}, "owner"),
        ({"owner": "x" * 254}, "owner"),
        ({"owner": "tab\there"}, "owner"),
        ({"owner": "a", "ip": "10.096.0.1"}, "ip"),
        ({"owner": "a", "ip": "fe80::1%eth0"}, "ip"),
        ({"owner": "a", "family": "IPv5"}, "family"),
        ({"owner": "a", "metadata": [1]}, "metadata"),
        ({"owner": "a", "unknown": 1}, "unknown"),
        ({"owner": "a", "ip": "10.96.0.1", "family": "IPv6"}, "family"),
    ],
)
async def test_invalid_allocation_requests(
    client: httpx.AsyncClient, default: dict, body: dict, field: str
) -> None:
    problem = assert_problem(
        await client.post("/v1/allocations", json=body), 422, "invalid-request"
    )
    assert field in [error["field"] for error in problem["errors"]]


@pytest.mark.parametrize(
    "query",
    [{"limit": "0"}, {"limit": "5001"}, {"limit": "x"}, {"family": "v4"}, {"cursor": "!!!"}],
)
async def test_invalid_list_queries(client: httpx.AsyncClient, default: dict, query: dict) -> None:
    assert_problem(await client.get("/v1/allocations", params=query), 422, "invalid-request")


async def test_malformed_json_and_bad_paths(client: httpx.AsyncClient, default: dict) -> None:
    bad_json = await client.post(
        "/v1/allocations", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(bad_json, 422, "invalid-request")
    assert_problem(await client.get("/v1/allocations/10.096.0.1"), 422, "invalid-request")
    assert_problem(await client.get("/v1/nothing-here"), 404, "not-found")


async def test_an_ip_and_a_range_of_different_families_blame_the_range(
    client: httpx.AsyncClient, default: dict
) -> None:
    response = await client.post(
        "/v1/allocations", json={"owner": "a", "ip": "fd00::1", "range": "default-ipv4"}
    )
    problem = assert_problem(response, 422, "invalid-request")
    assert [error["field"] for error in problem["errors"]] == ["range"]


@pytest.mark.parametrize(
    ("query", "field"), [({"limit": "0"}, "limit"), ({"family": "v4"}, "family")]
)
async def test_query_fields_are_named_plainly(
    client: httpx.AsyncClient, query: dict, field: str
) -> None:
    problem = assert_problem(
        await client.get("/v1/allocations", params=query), 422, "invalid-request"
    )
    assert [error["field"] for error in problem["errors"]] == [field]


async def test_json_that_does_not_parse_blames_the_body(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/ranges", content=b"notjson", headers={"content-type": "application/json"}
    )
    assert [
        error["field"] for error in assert_problem(response, 422, "invalid-request")["errors"]
    ] == ["body"]
