"""Hostile and malformed input, case by case: each is refused with a 4xx problem document that
says what is wrong, and nothing reaches the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.api.app import create_app
from allocator.api.limits import WatchLimiter
from allocator.domain.errors import TooManyWatchers
from allocator.domain.metadata import MAX_BYTES, MAX_DEPTH
from allocator.domain.token import Principal, Role
from allocator.settings import Settings
from tests.api.test_errors import assert_problem


@pytest.fixture
async def ranged(client: httpx.AsyncClient) -> httpx.AsyncClient:
    for name, cidr in (("v4", "10.96.0.0/24"), ("v6", "fd00::/120")):
        assert (await client.post("/v1/ranges", json={"name": name, "cidr": cidr})).is_success
    return client


MALFORMED_ADDRESSES = [
    "10.096.0.1",  # leading zero
    "010.96.0.1",
    "10.96.0.01",
    "fe80::1%eth0",  # zone
    "fd00::1%1",
    " 10.96.0.1",  # white space
    "10.96.0.1 ",
    "10.96.0.1\n",
    "10.96.0.256",  # out of range octet
    "10.96.0.-1",
    "10.96.0",  # abbreviated forms inet_aton takes
    "10.6291457",
    "0x0a.96.0.1",
    "167772161",
    "10.96.0.1/32",
    "fd00:::1",
    "fd00::1::2",
    "fd00::10000",
    "1" * 10_000,  # huge
    "",
    "\x00",
    "10.96.0.1\x00",
]


@pytest.mark.parametrize("ip", MALFORMED_ADDRESSES)
async def test_malformed_addresses_are_422_everywhere(ranged: httpx.AsyncClient, ip: str) -> None:
    created = await ranged.post("/v1/allocations", json={"owner": "a", "ip": ip})
    assert_problem(created, 422, "invalid-request")
    if ip and "/" not in ip:  # an encoded slash is a path that matches no route (404)
        path = "/v1/allocations/" + quote(ip, safe="")
        assert_problem(await ranged.get(path), 422, "invalid-request")


async def test_ipv4_mapped_ipv6_is_not_an_ipv4_address(ranged: httpx.AsyncClient) -> None:
    """``::ffff:10.96.0.5`` is an IPv6 address: it lies in no range here, and it must not be
    taken for 10.96.0.5 (which would let one owner hold that address under two spellings)."""
    mapped = await ranged.post("/v1/allocations", json={"owner": "a", "ip": "::ffff:10.96.0.5"})
    assert_problem(mapped, 422, "ip-not-in-range")
    plain = await ranged.post("/v1/allocations", json={"owner": "b", "ip": "10.96.0.5"})
    assert plain.status_code == 201


@pytest.mark.parametrize(
    "cidr",
    [
        "10.96.0.5/24",  # host bits
        "fd00::1/120",
        "10.96.0.0/033",
        "10.96.0.0/",
        "10.96.0.0",
        "10.96.0.0/24/24",
        "10.096.0.0/24",
        "fe80::%eth0/64",
        " 10.97.0.0/24",
        "10.97.0.0/-1",
        "10.97.0.0/+24",
        "0" * 64,
    ],
)
async def test_malformed_cidrs_are_422(ranged: httpx.AsyncClient, cidr: str) -> None:
    response = await ranged.post("/v1/ranges", json={"name": "x", "cidr": cidr})
    assert_problem(response, 422, "invalid-request")
    assert "pattern" not in response.json()["detail"], "say what is wrong, not the expression"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"name": "x", "cidr": "10.96.0.0/x"},
            "cidr: '10.96.0.0/x' is not a CIDR (expected ADDRESS/PREFIX)",
        ),
        (
            {"name": "x", "cidr": "10.96.0.0"},
            "cidr: '10.96.0.0' is not a CIDR (expected ADDRESS/PREFIX)",
        ),
        ({"owner": "a", "ip": "10.96.0.1/32"}, "ip: '10.96.0.1/32' is not a valid IP address"),
        (
            {"name": "X_1", "cidr": "10.97.0.0/24"},
            "name: range name 'X_1' must be 1-63 characters of [a-z0-9-], starting and ending with a letter or digit",
        ),
    ],
)
async def test_a_value_of_the_wrong_shape_is_named_for_what_it_is_not(
    ranged: httpx.AsyncClient, body: dict[str, str], detail: str
) -> None:
    path = "/v1/allocations" if "owner" in body else "/v1/ranges"
    response = await ranged.post(path, json=body)
    assert_problem(response, 422, "invalid-request")
    assert response.json()["detail"] == detail


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"owner=a", "application/x-www-form-urlencoded"),
        (b'{"owner": "a"}', "text/plain"),
        (b'{"owner": "a"}', None),
        (
            b"--b\r\nContent-Disposition: form-data; name=owner\r\n\r\na\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
    ],
)
async def test_bodies_that_are_not_json_are_refused_saying_so(
    ranged: httpx.AsyncClient, content: bytes, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await ranged.post("/v1/allocations", content=content, headers=headers)
    problem = assert_problem(response, 422, "invalid-request")
    assert "application/json" in problem["detail"]
    assert problem["errors"][0]["field"] == "body"


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe{}",  # not UTF-8
        b'{"owner": "a\\ud800"}',  # a lone surrogate
        b'{"owner": "a", "metadata": {"x": NaN}}',
        b'{"owner": "a", "metadata": {"x": 1' + b"0" * 5000 + b"}}",  # an integer too long
        b'{"owner": "a", "metadata": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",  # deep nesting
        b"[]",
        b"null",
        b'"owner"',
    ],
)
async def test_bodies_that_are_not_the_expected_json_get_422(
    ranged: httpx.AsyncClient, content: bytes
) -> None:
    response = await ranged.post(
        "/v1/allocations", content=content, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "invalid-request")
    assert (await ranged.get("/v1/allocations")).json()["items"] == []


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"a": "x" * (MAX_BYTES + 1)}, "bytes"),
        ({"k": [[[[[[[[[1]]]]]]]]]}, "levels"),
        ({"nul": "a\x00b"}, "NUL"),
        ({"a\x00": 1}, "NUL"),
        ({"big": 1e20}, "64-bit"),
        ({"big": 2**63}, "64-bit"),
        ({"small": -(2**63) - 1}, "64-bit"),
    ],
)
async def test_metadata_bounds(ranged: httpx.AsyncClient, metadata: dict, message: str) -> None:
    response = await ranged.post("/v1/allocations", json={"owner": "a", "metadata": metadata})
    problem = assert_problem(response, 422, "invalid-request")
    assert message in problem["detail"]


async def test_metadata_at_the_bounds_is_accepted(ranged: httpx.AsyncClient) -> None:
    deep: dict = {}
    level = deep
    for _ in range(MAX_DEPTH - 1):
        level["d"] = {}
        level = level["d"]
    response = await ranged.post("/v1/allocations", json={"owner": "a", "metadata": deep})
    assert response.status_code == 201, response.text
    assert response.json()["metadata"] == deep


async def test_unknown_fields_and_query_parameters_are_refused(ranged: httpx.AsyncClient) -> None:
    body = await ranged.post("/v1/allocations", json={"owner": "a", "ownr": "b"})
    assert "ownr" in [e["field"] for e in assert_problem(body, 422, "invalid-request")["errors"]]
    query = await ranged.delete("/v1/allocations", params={"owner": "a", "ownr": "b"})
    assert "ownr" in assert_problem(query, 422, "invalid-request")["detail"]
    twice = await ranged.delete("/v1/allocations", params=[("owner", "a"), ("owner", "b")])
    assert "more than once" in assert_problem(twice, 422, "invalid-request")["detail"]


@pytest.mark.parametrize(
    "path",
    ["/v1/allocations?owner=a%00b", "/v1/ranges/a%00b", "/v1/allocations?range=a%01"],
)
async def test_control_characters_in_lookups_are_422(ranged: httpx.AsyncClient, path: str) -> None:
    assert_problem(await ranged.get(path), 422, "invalid-request")


async def test_405_names_every_method_of_the_path(ranged: httpx.AsyncClient) -> None:
    response = await ranged.put("/v1/ranges")
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET, POST"


@pytest.fixture
async def small_bodies(engine: AsyncEngine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"max_body_bytes": 2048}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_a_declared_large_body_is_413_before_it_is_read(
    small_bodies: httpx.AsyncClient,
) -> None:
    body = b'{"owner": "a", "metadata": {"x": "' + b"y" * 4000 + b'"}}'
    response = await small_bodies.post(
        "/v1/allocations", content=body, headers={"content-type": "application/json"}
    )
    assert assert_problem(response, 413, "request-too-large")["limit"] == 2048


async def test_a_streamed_large_body_is_413_once_past_the_limit(
    small_bodies: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"owner": "a", "metadata": {"x": "'
        for _ in range(100):
            yield b"y" * 100
        yield b'"}}'

    response = await small_bodies.post(
        "/v1/allocations", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "request-too-large")
    small = await small_bodies.post("/v1/ranges", json={"name": "r", "cidr": "10.0.0.0/24"})
    assert small.status_code == 201


def test_watch_limiter_counts_per_token_and_gives_slots_back() -> None:
    limiter = WatchLimiter(per_token=2)
    agent, other = Principal("agent", Role.READER), Principal("other", Role.READER)
    first, second = limiter.lease(agent), limiter.lease(agent)
    with pytest.raises(TooManyWatchers):
        limiter.lease(agent)
    with limiter.lease(other):
        assert limiter.open_count("other") == 1
    assert limiter.open_count("other") == 0
    first.release()
    first.release()  # twice is harmless
    assert limiter.open_count("agent") == 1
    limiter.lease(agent).release()
    second.release()
    assert limiter.open_count("agent") == 0


async def test_watches_beyond_the_limit_are_429(engine: AsyncEngine, settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"max_watchers_per_token": 1}))
    async with app.router.lifespan_context(app):
        limiter: WatchLimiter = app.state.watch_limiter
        held = limiter.lease(Principal("anonymous", Role.ADMIN))  # as if a stream were open
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            refused = await http.get("/v1/watch")
            problem = assert_problem(refused, 429, "too-many-watchers")
            assert problem["limit"] == 1 and "retry-after" in refused.headers
        held.release()
        assert limiter.open_count("anonymous") == 0


async def test_metadata_numbers_at_the_bounds_survive_the_round_trip(
    ranged: httpx.AsyncClient,
) -> None:
    metadata = {"float": 9.2e18, "int": 2**63 - 1, "negative": -(2**63) + 1, "tiny": 1e-300}
    created = await ranged.post("/v1/allocations", json={"owner": "a", "metadata": metadata})
    assert created.status_code == 201, created.text
    listed = await ranged.get("/v1/allocations")
    assert listed.status_code == 200, listed.text
    stored = listed.json()["items"][0]["metadata"]
    assert stored["int"] == 2**63 - 1 and stored["negative"] == -(2**63) + 1
    assert float(stored["float"]) == 9.2e18 and stored["tiny"] == 1e-300
