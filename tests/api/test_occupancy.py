"""GET /v1/ranges/{name}/occupancy: per-band, per-block and per-slice counts."""

import ipaddress

import httpx


async def test_occupancy_of_an_eager_range(client: httpx.AsyncClient) -> None:
    await client.post("/v1/ranges", json={"name": "small", "cidr": "10.0.0.0/24"})
    for n, ip in enumerate(("10.0.0.1", "10.0.0.2", "10.0.0.200", "10.0.0.254")):
        assert (
            await client.post("/v1/allocations", json={"owner": f"o{n}", "ip": ip})
        ).status_code == 201
    body = (await client.get("/v1/ranges/small/occupancy", params={"cells": 4})).json()
    assert body["range"]["allocated"] == 4
    assert body["lazy"] is False
    assert body["bands"] == [
        {
            "band": "static",
            "first": "10.0.0.1",
            "last": "10.0.0.16",
            "size": 16,
            "used": 2,
            "blocks": 1,
            "materialized_blocks": 1,
        },
        {
            "band": "dynamic",
            "first": "10.0.0.17",
            "last": "10.0.0.254",
            "size": 238,
            "used": 2,
            "blocks": 1,
            "materialized_blocks": 1,
        },
    ]
    assert [
        (b["band"], b["block_no"], b["first"], b["size"], b["used"]) for b in body["blocks"]
    ] == [
        ("static", 0, "10.0.0.1", 16, 2),
        ("dynamic", 0, "10.0.0.17", 238, 2),
    ]
    # 254 usable addresses in 4 slices of 63 or 64: .1-.63, .64-.127, .128-.190, .191-.254
    assert [(c["first"], c["last"], c["size"], c["used"]) for c in body["cells"]] == [
        ("10.0.0.1", "10.0.0.63", 63, 2),
        ("10.0.0.64", "10.0.0.127", 64, 0),
        ("10.0.0.128", "10.0.0.190", 63, 0),
        ("10.0.0.191", "10.0.0.254", 64, 2),
    ]
    assert body["revision"] == 5
    without = (await client.get("/v1/ranges/small/occupancy")).json()
    assert without["cells"] is None


async def test_a_lazy_range_lists_only_materialized_blocks(client: httpx.AsyncClient) -> None:
    await client.post("/v1/ranges", json={"name": "v6", "cidr": "fd00:10:96::/64"})
    await client.post("/v1/allocations", json={"owner": "a", "ip": "fd00:10:96::5"})
    await client.post("/v1/allocations", json={"owner": "b", "ip": "fd00:10:96::ffff:1"})
    body = (await client.get("/v1/ranges/v6/occupancy", params={"cells": 64})).json()
    assert body["lazy"] is True
    assert body["cells"] is None
    static, dynamic = body["bands"]
    assert (static["used"], static["materialized_blocks"]) == (1, 1)
    assert (dynamic["used"], dynamic["materialized_blocks"], dynamic["blocks"]) == (
        1,
        1,
        (2**64 - 257) // 4096 + 1,
    )
    assert [b["used"] for b in body["blocks"]] == [1, 1]
    block_no = (0xFFFF0001 - 257) // 4096  # the dynamic band starts after 256 static addresses
    first = ipaddress.IPv6Address("fd00:10:96::") + 257 + block_no * 4096
    assert (body["blocks"][1]["block_no"], body["blocks"][1]["first"]) == (block_no, str(first))


async def test_unknown_range_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/ranges/nope/occupancy")
    assert (response.status_code, response.json()["type"]) == (404, "range-not-found")
    too_many = await client.get("/v1/ranges/nope/occupancy", params={"cells": 100000})
    assert too_many.status_code == 422


async def test_the_map_follows_a_grow_that_moves_the_network_address(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/v1/ranges", json={"name": "r", "cidr": "10.41.1.0/24"})
    await client.post("/v1/allocations", json={"owner": "a", "ip": "10.41.1.1"})
    await client.patch("/v1/ranges/r", json={"cidr": "10.41.0.0/22"})
    await client.post("/v1/allocations", json={"owner": "b", "ip": "10.41.1.255"})
    body = (await client.get("/v1/ranges/r/occupancy", params={"cells": 4})).json()
    assert [(b["band"], b["first"], b["last"], b["used"]) for b in body["bands"]] == [
        ("static", "10.41.0.1", "10.41.0.64", 0),
        ("dynamic", "10.41.0.65", "10.41.3.254", 2),
    ]
    assert [(c["first"], c["last"], c["used"]) for c in body["cells"]] == [
        ("10.41.0.1", "10.41.0.255", 0),
        ("10.41.1.0", "10.41.1.255", 2),
        ("10.41.2.0", "10.41.2.254", 0),
        ("10.41.2.255", "10.41.3.254", 0),
    ]
