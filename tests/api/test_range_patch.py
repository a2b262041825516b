"""PATCH /v1/ranges/{name} (a JSON merge patch) and the cool-down at creation, through HTTP."""

import httpx
import pytest

from tests.api.test_errors import assert_problem


@pytest.fixture
async def made(client: httpx.AsyncClient) -> dict:
    response = await client.post("/v1/ranges", json={"name": "r", "cidr": "10.96.0.0/24"})
    assert response.status_code == 201
    return response.json()


async def test_patch_changes_the_cool_down_at_a_new_revision(
    client: httpx.AsyncClient, made: dict
) -> None:
    assert (made["release_cooldown_seconds"], made["cooling"], made["free"]) == (0, 0, 254)
    response = await client.patch(
        "/v1/ranges/r",
        content=b'{"release_cooldown_seconds": 300}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {**made, "release_cooldown_seconds": 300}
    assert (await client.get("/v1/ranges/r")).json() == response.json()
    events = (await client.get("/v1/events", params={"since": made["revision"]})).json()
    assert events["items"] == [
        {"type": "RANGE_UPDATED", "revision": made["revision"] + 1, "range": response.json()}
    ]
    same = await client.patch("/v1/ranges/r", json={"release_cooldown_seconds": 300})
    assert same.status_code == 200
    empty = await client.patch("/v1/ranges/r", json={})
    assert empty.json() == response.json()
    head = (await client.get("/v1/events", params={"since": made["revision"]})).json()["revision"]
    assert head == made["revision"] + 1, "a patch that changes nothing takes no revision"


async def test_a_range_created_with_a_cool_down(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/ranges",
        json={"name": "c", "cidr": "fd00::/120", "release_cooldown_seconds": 86400},
    )
    assert response.status_code == 201
    assert response.json()["release_cooldown_seconds"] == 86400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"release_cooldown_seconds": -1}, "release_cooldown_seconds"),
        ({"release_cooldown_seconds": 86401}, "release_cooldown_seconds"),
        ({"release_cooldown_seconds": 1.5}, "release_cooldown_seconds"),
        ({"release_cooldown_seconds": 30.0}, "release_cooldown_seconds"),
        ({"release_cooldown_seconds": "30"}, "release_cooldown_seconds"),
        ({"release_cooldown_seconds": True}, "release_cooldown_seconds"),
        ({"release_cooldown_seconds": None}, "release_cooldown_seconds"),
        ({"name": "other"}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_patches(client: httpx.AsyncClient, made: dict, body: dict, field: str) -> None:
    problem = assert_problem(await client.patch("/v1/ranges/r", json=body), 422, "invalid-request")
    assert field in [error["field"] for error in problem["errors"]]
    assert (await client.get("/v1/ranges/r")).json() == made, "nothing changed"


@pytest.mark.parametrize("seconds", [-5, 86401, 2.5, "60", False])
async def test_bad_cool_down_at_creation(client: httpx.AsyncClient, seconds: object) -> None:
    response = await client.post(
        "/v1/ranges", json={"name": "x", "cidr": "10.9.0.0/24", "release_cooldown_seconds": seconds}
    )
    problem = assert_problem(response, 422, "invalid-request")
    assert "release_cooldown_seconds" in [error["field"] for error in problem["errors"]]


async def test_patch_of_no_range_and_of_a_body_that_is_not_json(client: httpx.AsyncClient) -> None:
    assert_problem(
        await client.patch("/v1/ranges/nope", json={"release_cooldown_seconds": 1}),
        404,
        "range-not-found",
    )
    await client.post("/v1/ranges", json={"name": "r", "cidr": "10.96.0.0/24"})
    not_json = await client.patch(
        "/v1/ranges/r",
        content=b"release_cooldown_seconds=1",
        headers={"content-type": "text/plain"},
    )
    assert_problem(not_json, 422, "invalid-request")


async def test_cooling_address_in_the_range_object_and_the_refusal(
    client: httpx.AsyncClient, made: dict
) -> None:
    await client.patch("/v1/ranges/r", json={"release_cooldown_seconds": 600})
    await client.post("/v1/allocations", json={"owner": "old", "ip": "10.96.0.20"})
    assert (await client.delete("/v1/allocations/10.96.0.20")).status_code == 204
    state = (await client.get("/v1/ranges/r")).json()
    assert (state["allocated"], state["cooling"], state["free"]) == (0, 1, 253)
    refused = await client.post("/v1/allocations", json={"owner": "new", "ip": "10.96.0.20"})
    problem = assert_problem(refused, 409, "ip-cooling-down")
    assert problem["released_by"] == "old"
    assert problem["available_at"].endswith("Z")
    back = await client.post("/v1/allocations", json={"owner": "old", "ip": "10.96.0.20"})
    assert back.status_code == 201


async def test_a_cooling_address_read_says_until_when_and_who_released_it(
    client: httpx.AsyncClient, made: dict
) -> None:
    await client.patch("/v1/ranges/r", json={"release_cooldown_seconds": 600})
    await client.post("/v1/allocations", json={"owner": "old", "ip": "10.96.0.30"})
    await client.delete("/v1/allocations/10.96.0.30")
    problem = assert_problem(
        await client.get("/v1/allocations/10.96.0.30"), 404, "ip-not-allocated"
    )
    assert problem["released_by"] == "old"
    assert problem["available_at"] > made["created_at"]
    free = assert_problem(await client.get("/v1/allocations/10.96.0.31"), 404, "ip-not-allocated")
    assert "released_by" not in free
