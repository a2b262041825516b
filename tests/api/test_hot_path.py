"""The hot path (``allocator.api.hot_path``) answers exactly as the app does without it.

The same requests, from an empty database, to an app with the hot path and to one without:
every status, problem document, allocation, header the contract names and change counter must
be the same, both for the requests it answers and for those it passes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.api.app import create_app
from allocator.api.hot_path import HotPath
from allocator.domain.token import Role, new_token, record_for
from allocator.settings import Settings
from allocator.store.token_file import append_record
from tests.database import empty_tables

ADMIN, ALLOCATOR, READER = new_token(), new_token(), new_token()
JSON = {"Content-Type": "application/json"}


def as_(token: str | None, **headers: str) -> dict[str, str]:
    return {**headers, **({"Authorization": f"Bearer {token}"} if token else {})}


def chunked(body: bytes) -> Any:
    """A body sent in chunks, without a Content-Length (made anew for each request)."""

    async def parts() -> Any:
        yield body

    return parts


# (method, path, body, headers): taken (well-formed) and passed on (anything else).
REQUESTS: list[tuple[str, str, Any, dict[str, str]]] = [
    ("POST", "/v1/ranges", {"name": "r", "cidr": "10.9.0.0/28"}, as_(ADMIN, **JSON)),
    ("POST", "/v1/ranges", {"name": "s", "cidr": "10.9.1.0/28"}, as_(ADMIN, **JSON)),
    ("POST", "/v1/allocations", {"owner": "a", "range": "r"}, as_(ALLOCATOR, **JSON)),
    ("POST", "/v1/allocations", {"owner": "a", "range": "r"}, as_(ALLOCATOR, **JSON)),  # retry
    (
        "POST",
        "/v1/allocations",
        {"owner": "s", "ip": "10.9.1.2", "metadata": {"p": 1}},
        as_(ALLOCATOR, **JSON),
    ),
    ("POST", "/v1/allocations", {"owner": "t", "ip": "10.9.1.2"}, as_(ALLOCATOR, **JSON)),
    ("POST", "/v1/allocations", {"owner": "s", "ip": "10.9.1.3"}, as_(ALLOCATOR, **JSON)),
    ("POST", "/v1/allocations", {"owner": "u", "ip": "10.9.2.1"}, as_(ALLOCATOR, **JSON)),
    ("POST", "/v1/allocations", {"owner": "u", "ip": "10.9.1.999"}, as_(ALLOCATOR, **JSON)),
    ("POST", "/v1/allocations", {"owner": "u", "range": "none"}, as_(ALLOCATOR, **JSON)),
    ("POST", "/v1/allocations", {"owner": "u", "family": "IPv6"}, as_(ALLOCATOR, **JSON)),
    ("POST", "/v1/allocations", {"owner": "", "range": "r"}, as_(ALLOCATOR, **JSON)),
    ("POST", "/v1/allocations", {"owner": "u", "bogus": 1}, as_(ALLOCATOR, **JSON)),
    ("POST", "/v1/allocations", b"{not json", as_(ALLOCATOR, **JSON)),
    ("POST", "/v1/allocations", {"owner": "u"}, as_(ALLOCATOR, **{"Content-Type": "text/plain"})),
    ("POST", "/v1/allocations", {"owner": "u"}, as_(READER, **JSON)),
    ("POST", "/v1/allocations", {"owner": "u"}, as_(None, **JSON)),
    ("POST", "/v1/allocations", {"owner": "u"}, as_("not-a-token", **JSON)),
    ("POST", "/v1/allocations?owner=u", {"owner": "u"}, as_(ALLOCATOR, **JSON)),
    ("POST", "/v1/allocations", chunked(b'{"owner": "c"}'), as_(ALLOCATOR, **JSON)),
    ("DELETE", "/v1/allocations/10.9.1.2?owner=t", None, as_(ALLOCATOR)),
    ("DELETE", "/v1/allocations/10.9.1.2?owner=", None, as_(ALLOCATOR)),
    ("DELETE", "/v1/allocations/10.9.1.2?ownr=s", None, as_(ALLOCATOR)),
    ("DELETE", "/v1/allocations/10.9.1.2?owner=s&owner=t", None, as_(ALLOCATOR)),
    ("DELETE", "/v1/allocations/10.9.1.2", None, as_(READER)),
    ("DELETE", "/v1/allocations/10.9.1.2?owner=s", None, as_(ALLOCATOR)),
    ("DELETE", "/v1/allocations/10.9.1.2", None, as_(ALLOCATOR)),
    ("DELETE", "/v1/allocations/not-an-ip", None, as_(ALLOCATOR)),
    ("DELETE", "/v1/allocations/10.9.1.2/x", None, as_(ALLOCATOR)),
    ("GET", "/v1/allocations", None, as_(READER)),
    ("GET", "/metrics", None, {}),
]
HEADERS = ("content-type", "www-authenticate", "retry-after", "allow")


async def answers(engine: AsyncEngine, settings: Settings, hot: bool) -> list[Any]:
    await empty_tables(engine)
    app = create_app(settings)
    if not hot:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not HotPath]
    found = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            for method, path, body, headers in REQUESTS:
                if isinstance(body, dict):
                    body = orjson.dumps(body)
                elif callable(body):
                    body = body()
                response = await http.request(method, path, content=body, headers=headers)
                found.append(
                    (
                        method,
                        path,
                        response.status_code,
                        comparable(response),
                        {h: response.headers.get(h) for h in HEADERS},
                    )
                )
    return found


DYNAMIC = {"a", "c"}
"""Owners of dynamic allocations: their addresses are chosen at random."""


def comparable(response: httpx.Response) -> Any:
    """The body with what differs between two runs set aside: times, random addresses."""
    if response.headers.get("content-type", "").startswith("text/plain"):
        return [
            line
            for line in response.text.splitlines()
            if line.startswith(("allocator_allocation_total", "allocator_release_total"))
        ]
    if not response.content:
        return None
    document = response.json()
    for one in document.get("items", [document]):
        one.pop("created_at", None)
        one.get("allocation", {}).pop("created_at", None)  # an owner-has-allocation's
        if one.get("owner") in DYNAMIC:
            one["ip"] = "dynamic"
    if "items" in document:  # in address order, which random addresses change
        document["items"].sort(key=lambda one: one["owner"])
    return document


async def test_allocations_and_releases_get_the_same_answers_with_and_without_the_hot_path(
    engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    for token, role in ((ADMIN, Role.ADMIN), (ALLOCATOR, Role.ALLOCATOR), (READER, Role.READER)):
        append_record(tmp_path / "tokens", record_for(token, f"{role}-token", role))
    secured = settings.model_copy(update={"tokens_file": tmp_path / "tokens"})
    with_hot_path = await answers(engine, secured, hot=True)
    without = await answers(engine, secured, hot=False)
    for hot, plain in zip(with_hot_path, without, strict=True):
        assert hot == plain
    statuses = [answer[2] for answer in with_hot_path]
    assert {201, 200, 204, 401, 403, 404, 409, 422} <= set(statuses), "every kind of answer"
