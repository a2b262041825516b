"""Bearer tokens and roles through HTTP: who may do what, and how a refusal looks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.api.app import create_app
from allocator.domain.token import Role, new_token, record_for
from allocator.settings import Settings
from allocator.store.token_file import RECHECK_SECONDS, append_record
from tests.api.test_errors import assert_problem

ROLES = (Role.ADMIN, Role.ALLOCATOR, Role.READER)


@pytest.fixture
def tokens(tmp_path: Path) -> dict[Role, str]:
    """One token per role, in a fresh tokens file."""
    issued = {role: new_token() for role in ROLES}
    for role, token in issued.items():
        append_record(tmp_path / "tokens", record_for(token, f"{role}-token", role))
    return issued


@pytest.fixture
async def secured(
    engine: AsyncEngine, settings: Settings, tmp_path: Path, tokens: dict[Role, str]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"tokens_file": tmp_path / "tokens"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# (method, path, json body, the least role allowed)
OPERATIONS = [
    ("GET", "/v1/ranges", None, Role.READER),
    ("GET", "/v1/ranges/r", None, Role.READER),
    ("GET", "/v1/allocations", None, Role.READER),
    ("GET", "/v1/allocations/10.0.0.9", None, Role.READER),
    ("GET", "/v1/events", None, Role.READER),
    ("POST", "/v1/allocations", {"owner": "o"}, Role.ALLOCATOR),
    ("DELETE", "/v1/allocations/10.0.0.9", None, Role.ALLOCATOR),
    ("DELETE", "/v1/allocations?owner=o", None, Role.ALLOCATOR),
    ("POST", "/v1/ranges", {"name": "other", "cidr": "10.1.0.0/24"}, Role.ADMIN),
    ("DELETE", "/v1/ranges/other", None, Role.ADMIN),
]
RANK = {Role.READER: 0, Role.ALLOCATOR: 1, Role.ADMIN: 2}


@pytest.mark.parametrize(("method", "path", "body", "least"), OPERATIONS)
async def test_each_role_may_do_exactly_what_it_grants(
    secured: httpx.AsyncClient,
    tokens: dict[Role, str],
    method: str,
    path: str,
    body: dict | None,
    least: Role,
) -> None:
    admin = bearer(tokens[Role.ADMIN])
    created = await secured.post(
        "/v1/ranges", json={"name": "r", "cidr": "10.0.0.0/24"}, headers=admin
    )
    assert created.status_code == 201
    for role in ROLES:
        response = await secured.request(method, path, json=body, headers=bearer(tokens[role]))
        if RANK[role] < RANK[least]:
            problem = assert_problem(response, 403, "forbidden")
            assert problem["role"] == role
        else:
            assert response.status_code not in (401, 403), (role, response.text)
            assert response.status_code < 500, response.text


@pytest.mark.parametrize(("method", "path", "body", "least"), OPERATIONS)
async def test_no_token_or_a_wrong_one_is_401(
    secured: httpx.AsyncClient, method: str, path: str, body: dict | None, least: Role
) -> None:
    for headers in ({}, bearer("not-a-token"), {"Authorization": "Basic dXNlcjpwdw=="}):
        response = await secured.request(method, path, json=body, headers=headers)
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_refused_writes_change_nothing(
    secured: httpx.AsyncClient, tokens: dict[Role, str]
) -> None:
    reader = bearer(tokens[Role.READER])
    refused = await secured.post("/v1/ranges", json={"name": "r", "cidr": "10.0.0.0/24"})
    assert refused.status_code == 401
    refused = await secured.post(
        "/v1/ranges", json={"name": "r", "cidr": "10.0.0.0/24"}, headers=reader
    )
    assert refused.status_code == 403
    assert (await secured.get("/v1/ranges", headers=reader)).json() == {"items": []}
    assert (await secured.get("/v1/events", headers=reader)).json()["revision"] == 0


async def test_probes_and_schema_need_no_token(secured: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert (await secured.get(path)).status_code == 200, path


async def test_a_token_added_while_serving_is_accepted(
    secured: httpx.AsyncClient, tmp_path: Path
) -> None:
    token = new_token()
    assert (await secured.get("/v1/ranges", headers=bearer(token))).status_code == 401
    append_record(tmp_path / "tokens", record_for(token, "late", Role.READER))
    await asyncio.sleep(RECHECK_SECONDS * 1.2)
    assert (await secured.get("/v1/ranges", headers=bearer(token))).status_code == 200


async def test_open_server_serves_everyone(client: httpx.AsyncClient) -> None:
    """Without a tokens file every caller is the anonymous admin (serve keeps it on loopback)."""
    created = await client.post("/v1/ranges", json={"name": "r", "cidr": "10.0.0.0/24"})
    assert created.status_code == 201


def test_openapi_declares_the_bearer_scheme_and_problem_responses(
    settings: Settings, tmp_path: Path, tokens: dict[Role, str]
) -> None:
    app = create_app(settings.model_copy(update={"tokens_file": tmp_path / "tokens"}))
    schema = app.openapi()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    allocate = schema["paths"]["/v1/allocations"]["post"]
    assert allocate["security"] == [{"HTTPBearer": []}]
    for status in ("401", "403", "404", "409", "413", "422", "503"):
        assert "application/problem+json" in allocate["responses"][status]["content"], status
    assert "security" not in schema["paths"]["/healthz"]["get"]


async def test_each_change_is_logged_with_its_principal_request_id_and_revision(
    secured: httpx.AsyncClient, tokens: dict[Role, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="allocator.change")
    admin, allocator = bearer(tokens[Role.ADMIN]), bearer(tokens[Role.ALLOCATOR])
    await secured.post("/v1/ranges", json={"name": "r", "cidr": "10.0.0.0/24"}, headers=admin)
    created = await secured.post(
        "/v1/allocations",
        json={"owner": "svc"},
        headers={**allocator, "X-Request-ID": "audit-1"},
    )
    assert created.status_code == 201
    changes = [r for r in caplog.records if r.name == "allocator.change"]
    assert [(r.principal, r.role) for r in changes] == [  # type: ignore[attr-defined]
        ("admin-token", "admin"),
        ("allocator-token", "allocator"),
    ]
    allocated = changes[1]
    assert allocated.request_id == "audit-1"  # type: ignore[attr-defined]
    assert allocated.revision == created.json()["revision"]  # type: ignore[attr-defined]
