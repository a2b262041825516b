"""``GET /v1/watch?timeout_seconds=N``: a client (or a generic tool) asks for a stream that ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.api.app import create_app
from allocator.settings import Settings
from tests.api.test_errors import assert_problem

HANG_GUARD = 120.0
"""Seconds after which a stream that should have ended after one is a hang, not slowness."""


@pytest.fixture
async def feed(engine: AsyncEngine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A server whose own watch timeout (and so the longest a client may ask for) is 5 s."""
    app = create_app(settings.model_copy(update={"watch_timeout_seconds": 5.0}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_a_watch_ends_after_the_timeout_the_client_asks_for(
    feed: httpx.AsyncClient,
) -> None:
    await feed.post("/v1/ranges", json={"name": "r", "cidr": "10.0.0.0/24"})
    async with asyncio.timeout(HANG_GUARD):
        ndjson = await feed.get("/v1/watch", params={"since": 0, "timeout_seconds": 1})
        sse = await feed.get(
            "/v1/watch",
            params={"since": 0, "timeout_seconds": 1},
            headers={"Accept": "text/event-stream"},
        )
    assert ndjson.headers["content-type"] == "application/x-ndjson"
    events = [orjson.loads(line) for line in ndjson.text.splitlines()]
    assert [e["type"] for e in events[:2]] == ["RANGE_ADDED", "BOOKMARK"]
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert sse.text.startswith("id: 1\ndata: ")


@pytest.mark.parametrize("seconds", ["0", "6", "-1", "x"])
async def test_a_timeout_outside_one_to_the_server_maximum_is_refused(
    feed: httpx.AsyncClient, seconds: str
) -> None:
    response = await feed.get("/v1/watch", params={"timeout_seconds": seconds})
    problem = assert_problem(response, 422, "invalid-request")
    assert [error["field"] for error in problem["errors"]] == ["timeout_seconds"]
    if seconds == "6":
        assert "at most 5" in problem["detail"]


async def test_the_schema_states_the_server_maximum(feed: httpx.AsyncClient) -> None:
    schema = (await feed.get("/openapi.json")).json()
    (parameter,) = [
        p
        for p in schema["paths"]["/v1/watch"]["get"]["parameters"]
        if p["name"] == "timeout_seconds"
    ]
    assert (parameter["schema"]["minimum"], parameter["schema"]["maximum"]) == (1, 5)
