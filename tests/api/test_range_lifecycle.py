"""PATCH /v1/ranges/{name} with cidr and allocatable, through HTTP: one revision and one
RANGE_UPDATED per change, and every refusal leaving the range as it was."""

import httpx
import pytest

from tests.api.test_errors import assert_problem


@pytest.fixture
async def made(client: httpx.AsyncClient) -> dict:
    response = await client.post("/v1/ranges", json={"name": "r", "cidr": "10.41.1.0/24"})
    assert response.status_code == 201
    assert response.json()["allocatable"] is True
    await client.post("/v1/ranges", json={"name": "other", "cidr": "10.42.0.0/24"})
    for owner, ip in (("a", "10.41.1.5"), ("b", "10.41.1.200")):
        assert (await client.post("/v1/allocations", json={"owner": owner, "ip": ip})).is_success
    return (await client.get("/v1/ranges/r")).json()


async def events_after(client: httpx.AsyncClient, revision: int) -> list[dict]:
    return (await client.get("/v1/events", params={"since": revision})).json()["items"]


async def test_a_grow_and_a_drain_in_one_patch_take_one_revision(
    client: httpx.AsyncClient, made: dict
) -> None:
    head = (await client.get("/v1/events", params={"since": 0})).json()["revision"]
    response = await client.patch(
        "/v1/ranges/r",
        content=b'{"cidr": "10.41.0.0/22", "allocatable": false}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    grown = response.json()
    assert grown == {
        **made,
        "cidr": "10.41.0.0/22",
        "size": 1022,
        "free": 1020,
        "static_band": {"first": "10.41.0.1", "last": "10.41.0.64", "size": 64},
        "allocatable": False,
    }
    assert (await client.get("/v1/ranges/r")).json() == grown
    assert await events_after(client, head) == [
        {"type": "RANGE_UPDATED", "revision": head + 1, "range": grown}
    ]
    listed = (await client.get("/v1/allocations", params={"range": "r"})).json()["items"]
    assert [a["ip"] for a in listed] == ["10.41.1.5", "10.41.1.200"]
    refused = await client.post("/v1/allocations", json={"owner": "c", "range": "r"})
    assert_problem(refused, 409, "range-not-allocatable")
    refused = await client.post("/v1/allocations", json={"owner": "c", "ip": "10.41.0.9"})
    assert_problem(refused, 409, "range-not-allocatable")
    retry = await client.post("/v1/allocations", json={"owner": "a", "ip": "10.41.1.5"})
    assert retry.status_code == 200
    assert (await client.delete("/v1/allocations/10.41.1.5?owner=a")).status_code == 204
    resumed = await client.patch("/v1/ranges/r", json={"allocatable": True})
    assert resumed.json()["allocatable"] is True
    taken = await client.post("/v1/allocations", json={"owner": "c", "ip": "10.41.0.9"})
    assert taken.status_code == 201


async def test_a_shrink_back(client: httpx.AsyncClient, made: dict) -> None:
    await client.patch("/v1/ranges/r", json={"cidr": "10.41.0.0/22"})
    response = await client.patch("/v1/ranges/r", json={"cidr": "10.41.1.0/24"})
    assert response.status_code == 200
    assert response.json() == made
    same = await client.patch("/v1/ranges/r", json={"cidr": "10.41.1.0/24"})
    assert same.json() == made


@pytest.mark.parametrize(
    ("body", "status", "type_", "field"),
    [
        ({"cidr": "10.41.1.0/25"}, 409, "allocations-outside-range", None),
        ({"cidr": "10.42.0.0/23"}, 422, "invalid-request", "cidr"),  # neither in nor around
        ({"cidr": "10.40.0.0/14"}, 409, "range-overlaps", None),
        ({"cidr": "10.41.1.0/31"}, 422, "invalid-request", "cidr"),
        ({"cidr": "10.0.0.0/7"}, 422, "invalid-request", "cidr"),
        ({"cidr": "10.41.1.1/24"}, 422, "invalid-request", "cidr"),
        ({"cidr": "10.041.1.0/24"}, 422, "invalid-request", "cidr"),
        ({"cidr": "fd00::/120"}, 422, "invalid-request", "cidr"),
        ({"cidr": "not a cidr"}, 422, "invalid-request", "cidr"),
        ({"cidr": None}, 422, "invalid-request", "cidr"),
        ({"cidr": 24}, 422, "invalid-request", "cidr"),
        ({"allocatable": "false"}, 422, "invalid-request", "allocatable"),
        ({"allocatable": 0}, 422, "invalid-request", "allocatable"),
        ({"allocatable": None}, 422, "invalid-request", "allocatable"),
        ({"cidr": "10.41.0.0/22", "name": "x"}, 422, "invalid-request", "name"),
        ({"allocatable": False, "colour": "red"}, 422, "invalid-request", "colour"),
        (
            {"cidr": "10.41.0.0/22", "release_cooldown_seconds": -1},
            422,
            "invalid-request",
            "release_cooldown_seconds",
        ),
    ],
)
async def test_every_refusal_leaves_the_range_unchanged(
    client: httpx.AsyncClient,
    made: dict,
    body: dict,
    status: int,
    type_: str,
    field: str | None,
) -> None:
    head = (await client.get("/v1/events", params={"since": 0})).json()["revision"]
    problem = assert_problem(await client.patch("/v1/ranges/r", json=body), status, type_)
    if field is not None:
        assert field in [error["field"] for error in problem["errors"]]
    if type_ == "allocations-outside-range":
        assert (problem["count"], problem["examples"]) == (1, ["10.41.1.200"])
    if type_ == "range-overlaps":
        assert problem["conflicting_range"] == "other"
    assert (await client.get("/v1/ranges/r")).json() == made, "nothing changed"
    assert await events_after(client, head) == [], "no revision taken"
