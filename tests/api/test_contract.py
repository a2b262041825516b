"""The successful paths of docs/api.md through HTTP."""

import httpx


async def test_range_document(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/ranges", json={"name": "default-ipv4", "cidr": "10.96.0.0/12"})
    assert created.status_code == 201
    body = created.json()
    assert {k: body[k] for k in ("name", "cidr", "family", "size", "allocated", "free")} == {
        "name": "default-ipv4",
        "cidr": "10.96.0.0/12",
        "family": "IPv4",
        "size": 1048574,
        "allocated": 0,
        "free": 1048574,
    }
    assert body["static_band"] == {"first": "10.96.0.1", "last": "10.96.1.0", "size": 256}
    assert body["created_at"].endswith("Z")
    assert (await client.get("/v1/ranges/default-ipv4")).json() == body


async def test_ipv6_counts_are_exact_integers(client: httpx.AsyncClient) -> None:
    body = (await client.post("/v1/ranges", json={"name": "v6", "cidr": "FD00:10:96::/64"})).json()
    assert body["cidr"] == "fd00:10:96::/64"
    assert body["size"] == 2**64 - 1
    assert body["free"] == 2**64 - 1
    small = (await client.post("/v1/ranges", json={"name": "tiny6", "cidr": "fd00:1::/124"})).json()
    assert small["static_band"] == {"first": None, "last": None, "size": 0}


async def test_ranges_are_listed_by_name(client: httpx.AsyncClient) -> None:
    for name, cidr in (("zeta", "10.1.0.0/24"), ("alpha", "10.2.0.0/24")):
        await client.post("/v1/ranges", json={"name": name, "cidr": cidr})
    assert [r["name"] for r in (await client.get("/v1/ranges")).json()["items"]] == [
        "alpha",
        "zeta",
    ]
    assert (await client.delete("/v1/ranges/zeta")).status_code == 204
    assert [r["name"] for r in (await client.get("/v1/ranges")).json()["items"]] == ["alpha"]


async def test_allocate_retry_get_list_release(client: httpx.AsyncClient) -> None:
    await client.post("/v1/ranges", json={"name": "default-ipv6", "cidr": "fd00:10:96::/112"})
    request = {"owner": "default/web", "family": "IPv6", "metadata": {"endpoints": []}}
    first = await client.post("/v1/allocations", json=request)
    assert first.status_code == 201
    allocation = first.json()
    assert allocation["range"] == "default-ipv6"
    assert allocation["metadata"] == {"endpoints": []}
    retry = await client.post("/v1/allocations", json=request)
    assert (retry.status_code, retry.json()) == (200, allocation)
    got = await client.get(f"/v1/allocations/{allocation['ip'].upper()}")
    assert got.json() == allocation
    listed = (await client.get("/v1/allocations", params={"family": "IPv6"})).json()
    assert listed == {
        "items": [allocation],
        "revision": allocation["revision"],
        "next_cursor": None,
    }
    released = await client.delete("/v1/allocations", params={"owner": "default/web"})
    assert released.json() == {"released": [allocation]}
    assert (await client.get(f"/v1/allocations/{allocation['ip']}")).status_code == 404


async def test_static_ip_is_returned_canonically(client: httpx.AsyncClient) -> None:
    await client.post("/v1/ranges", json={"name": "v6", "cidr": "fd00:10:96::/112"})
    created = await client.post(
        "/v1/allocations", json={"owner": "a", "ip": "FD00:10:96:0:0:0:0:A"}
    )
    assert created.json()["ip"] == "fd00:10:96::a"
    assert (
        await client.delete("/v1/allocations/fd00:10:96::a", params={"owner": "a"})
    ).status_code == 204


async def test_probes(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
