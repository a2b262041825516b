"""Request ids, the per-request and per-change log lines, and their JSON form."""

import json
import logging
from types import SimpleNamespace

import httpx
import pytest
from fastapi import Request

from allocator.api.app import create_app
from allocator.api.logs import JsonFormatter, TextFormatter
from allocator.settings import Settings


def lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger]


async def test_an_incoming_request_id_is_kept_and_echoed(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await client.post("/v1/ranges", json={"name": "a", "cidr": "10.0.0.0/24"})
    response = await client.post(
        "/v1/allocations", json={"owner": "default/web"}, headers={"X-Request-ID": "trace-42"}
    )
    assert response.headers["x-request-id"] == "trace-42"
    access = [r for r in lines(caplog, "allocator.request") if r.request_id == "trace-42"]
    assert len(access) == 1
    assert (access[0].method, access[0].route, access[0].status) == ("POST", "/v1/allocations", 201)
    assert access[0].duration_ms > 0
    change = json.loads(JsonFormatter().format(lines(caplog, "allocator.change")[-1]))
    allocation = response.json()
    assert change["message"] == f"allocated {allocation['ip']}"
    assert {k: change[k] for k in ("request_id", "owner", "ip", "range", "revision")} == {
        "request_id": "trace-42",
        "owner": "default/web",
        "ip": allocation["ip"],
        "range": "a",
        "revision": allocation["revision"],
    }
    access_line = json.loads(JsonFormatter().format(access[0]))
    assert access_line["status"] == 201 and access_line["level"] == "info"
    assert "request_id=trace-42" in TextFormatter().format(access[0])


async def test_a_request_id_is_made_when_none_comes(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first = await client.get("/v1/ranges")
    second = await client.get("/v1/ranges", headers={"X-Request-ID": "x" * 500})
    made = {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert len(made) == 2 and all(len(rid) == 32 for rid in made), "fresh ids, oversized refused"
    unknown = await client.get("/v1/nowhere")
    assert unknown.status_code == 404
    assert lines(caplog, "allocator.request")[-1].route == "unmatched"


async def test_the_caller_is_named_when_authentication_ran(
    engine: object, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = create_app(settings)

    @app.get("/who")
    async def who(request: Request) -> dict[str, str]:
        request.state.principal = SimpleNamespace(name="ci-bot", role="reader")
        return {}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            await http.get("/who")
    record = next(r for r in lines(caplog, "allocator.request") if r.path == "/who")
    assert (record.principal, record.role) == ("ci-bot", "reader")


async def test_a_release_is_logged_with_its_revision(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await client.post("/v1/ranges", json={"name": "a", "cidr": "10.0.0.0/24"})
    held = (await client.post("/v1/allocations", json={"owner": "o", "ip": "10.0.0.9"})).json()
    released = await client.delete("/v1/allocations/10.0.0.9", headers={"X-Request-ID": "rel-1"})
    assert released.status_code == 204
    change = lines(caplog, "allocator.change")[-1]
    assert (change.getMessage(), change.request_id, change.revision) == (
        "released 10.0.0.9",
        "rel-1",
        held["revision"] + 1,
    )
