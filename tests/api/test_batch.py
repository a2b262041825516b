"""POST /v1/allocations:batch through HTTP: answers equal to one request after the other, dense
revisions in request order, atomic batches that store nothing when refused, and bad input."""

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.test_errors import assert_problem
from tests.database import empty_tables
from tests.integration.consistency import assert_consistent

BATCH = "/v1/allocations:batch"

# Static, dynamic, retries and refusals, some depending on earlier ones: r is a /29 (six
# addresses, no static band), v6 a /120.
MIXED: list[dict[str, Any]] = [
    {"owner": "a"},
    {"owner": "b", "ip": "10.0.0.3", "metadata": {"port": 53}},
    {"owner": "a"},
    {"owner": "c", "ip": "10.0.0.3"},
    {"owner": "b", "ip": "10.0.0.4"},
    {"owner": "d", "range": "nope"},
    {"owner": "e", "ip": "10.1.0.1"},
    {"owner": "a", "family": "IPv6"},
    {"owner": "f", "range": "r", "family": "IPv6"},
    {"owner": "b", "ip": "10.0.0.3"},
    *({"owner": f"g{n}", "range": "r"} for n in range(4)),
    {"owner": "h"},
    {"owner": "a", "family": "IPv6", "range": "v6"},
]
STATUSES = [201, 201, 200, 409, 409, 404, 422, 201, 422, 200, 201, 201, 201, 201, 409, 200]


async def make_ranges(client: httpx.AsyncClient) -> int:
    for name, cidr in (("r", "10.0.0.0/29"), ("v6", "fd00::/120")):
        assert (
            await client.post("/v1/ranges", json={"name": name, "cidr": cidr})
        ).status_code == 201
    return 2


def comparable(status: int, body: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """What must be equal in a result and an answer alone: all of it but a dynamic address (and
    the creation time of the allocations in it)."""
    if "type" in body:
        return {"status": status, "type": body["type"], "detail": body["detail"]}
    allocation = {k: v for k, v in body.items() if k != "created_at"}
    if "ip" not in request:
        allocation.pop("ip", None)
    return {"status": status, **allocation}


@pytest.mark.parametrize("atomic", [False, True])
async def test_a_mixed_batch_answers_as_the_requests_one_by_one(
    client: httpx.AsyncClient, engine: AsyncEngine, atomic: bool
) -> None:
    head = await make_ranges(client)
    requests = MIXED if not atomic else [r for r, s in zip(MIXED, STATUSES, strict=True) if s < 400]
    response = await client.post(BATCH, json={"atomic": atomic, "requests": requests})
    assert response.status_code == 200, response.text
    batch = response.json()
    results = batch["results"]
    expected = [s for r, s in zip(MIXED, STATUSES, strict=True) if r in requests]
    assert [r["status"] for r in results] == expected
    created = [r["allocation"]["revision"] for r in results if r["status"] == 201]
    assert created == list(range(head + 1, head + 1 + len(created))), "dense, in request order"
    assert batch["revision"] == head + len(created)
    if not atomic:
        ips = [r.get("allocation", {}).get("ip") for r in results]
        assert ips[2] == ips[0], "a retry in the batch gets the earlier request's address"
        assert ips[15] == ips[7]
    in_batch = [
        comparable(r["status"], r.get("allocation") or r["problem"], q)
        for r, q in zip(results, requests, strict=True)
    ]
    await assert_consistent(engine)

    await empty_tables(engine)
    await make_ranges(client)
    alone = []
    for request in requests:
        answer = await client.post("/v1/allocations", json=request)
        alone.append(comparable(answer.status_code, answer.json(), request))
    assert in_batch == alone


async def test_a_refused_atomic_batch_stores_nothing_and_names_every_refusal(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await make_ranges(client)
    await client.post("/v1/allocations", json={"owner": "holder", "family": "IPv6"})
    before = [
        (await client.get(path)).json()
        for path in ("/v1/ranges", "/v1/allocations", "/v1/events?since=0")
    ]
    bits = await assert_consistent(engine)
    response = await client.post(BATCH, json={"requests": MIXED})
    problem = assert_problem(response, 409, "batch-failed")
    refused = [n for n, s in enumerate(STATUSES) if s >= 400]
    assert [e["index"] for e in problem["errors"]] == refused
    assert [e["problem"]["status"] for e in problem["errors"]] == [STATUSES[n] for n in refused]
    assert problem["errors"][0]["problem"]["holder"] == "b"
    after = [
        (await client.get(path)).json()
        for path in ("/v1/ranges", "/v1/allocations", "/v1/events?since=0")
    ]
    assert after == before, "no row, count, event or revision"
    assert await assert_consistent(engine) == bits, "no bit"
    first = await client.post(
        BATCH, json={"requests": [{"owner": "x", "range": "nope"}, {"owner": "y"}]}
    )
    assert assert_problem(first, 404, "batch-failed")["errors"][0]["index"] == 0


async def test_dual_stack_is_one_atomic_batch(client: httpx.AsyncClient) -> None:
    await make_ranges(client)
    response = await client.post(
        BATCH,
        json={"requests": [{"owner": "web", "family": "IPv6"}, {"owner": "web", "family": "IPv4"}]},
    )
    assert response.status_code == 200
    families = [r["allocation"]["family"] for r in response.json()["results"]]
    assert families == ["IPv6", "IPv4"]
    events = (await client.get("/v1/events", params={"since": 2})).json()["items"]
    assert [(e["type"], e["allocation"]["family"]) for e in events] == [
        ("ALLOCATED", "IPv6"),
        ("ALLOCATED", "IPv4"),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"requests": []}, "requests"),
        ({"requests": [{"owner": "a"}] * 1001}, "requests"),
        ({}, "requests"),
        ({"requests": [{"owner": "a"}, {"owner": ""}]}, "requests[1].owner"),
        ({"requests": [{"owner": "a", "colour": 1}]}, "requests[0].colour"),
        ({"requests": [{"owner": "a", "ip": "10.096.0.1"}]}, "requests[0].ip"),
        (
            {"requests": [{"owner": "a"}, {"owner": "b", "ip": "fd00::1", "family": "IPv4"}]},
            "requests[1].family",
        ),
        ({"requests": [{"owner": "a", "family": "IPv5"}]}, "requests[0].family"),
        ({"requests": [{"owner": "a"}], "atomic": "yes"}, "atomic"),
        ({"requests": [{"owner": "a"}], "extra": True}, "extra"),
        ({"requests": {"owner": "a"}}, "requests"),
    ],
)
async def test_bad_batches(client: httpx.AsyncClient, body: dict, field: str) -> None:
    await make_ranges(client)
    problem = assert_problem(await client.post(BATCH, json=body), 422, "invalid-request")
    assert field in [error["field"] for error in problem["errors"]]
    assert (await client.get("/v1/allocations")).json()["items"] == []


async def test_a_thousand_requests_with_metadata_fit_the_batch_body_limit(
    client: httpx.AsyncClient,
) -> None:
    assert (
        await client.post("/v1/ranges", json={"name": "big", "cidr": "10.0.0.0/16"})
    ).status_code == 201
    metadata = {"service": "x" * 300, "labels": {"app": "web", "tier": "frontend"}}
    requests = [{"owner": f"default/svc-{n}", "metadata": metadata} for n in range(1000)]
    response = await client.post(BATCH, json={"requests": requests})
    assert response.status_code == 200, response.text[:300]
    assert len({r["allocation"]["ip"] for r in response.json()["results"]}) == 1000
    too_large = {"requests": [{"owner": "o", "metadata": {"x": "y" * 16_000}}] * 140}
    assert_problem(await client.post(BATCH, json=too_large), 413, "request-too-large")
    single = await client.post(
        "/v1/allocations", json={"owner": "o", "metadata": {"x": "y" * 70_000}}
    )
    assert_problem(single, 413, "request-too-large")
