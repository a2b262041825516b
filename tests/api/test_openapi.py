"""The OpenAPI schema as a client contract: valid, named and worded for generated clients, and
true to what the server answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from openapi_spec_validator import validate

from allocator.api.app import create_app
from allocator.api.problem_schemas import ProblemType
from allocator.api.problems import HTTP_ERROR, HTTP_TYPES, INTERNAL_ERROR, STATUS
from allocator.domain.errors import BatchFailed
from allocator.domain.token import Role, new_token, record_for
from allocator.settings import Settings
from allocator.store.token_file import append_record
from tests.api.declared import Declared

PROBLEM = "application/problem+json"
OPERATIONS = {
    ("post", "/v1/ranges"): "createRange",
    ("get", "/v1/ranges"): "listRanges",
    ("get", "/v1/ranges/{name}"): "getRange",
    ("patch", "/v1/ranges/{name}"): "changeRange",
    ("delete", "/v1/ranges/{name}"): "deleteRange",
    ("get", "/v1/ranges/{name}/occupancy"): "getOccupancy",
    ("post", "/v1/allocations"): "allocate",
    ("post", "/v1/allocations:batch"): "allocateBatch",
    ("get", "/v1/allocations"): "listAllocations",
    ("delete", "/v1/allocations"): "releaseOwner",
    ("get", "/v1/allocations/{ip}"): "getAllocation",
    ("delete", "/v1/allocations/{ip}"): "release",
    ("get", "/v1/events"): "listEvents",
    ("get", "/v1/watch"): "watch",
    ("get", "/healthz"): "getHealth",
    ("get", "/readyz"): "getReadiness",
    ("get", "/metrics"): "getMetrics",
}
EVENT_TYPES = {
    "ALLOCATED",
    "RELEASED",
    "RANGE_ADDED",
    "RANGE_UPDATED",
    "RANGE_REMOVED",
    "BOOKMARK",
    "ERROR",
}


def schema_of(settings: Settings) -> dict[str, Any]:
    return create_app(settings).openapi()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The schema of a server without tokens (the default)."""
    return schema_of(Settings(database_url="postgresql://unused@127.0.0.1/unused"))


@pytest.fixture
def secured(tmp_path: Path) -> dict[str, Any]:
    append_record(tmp_path / "tokens", record_for(new_token(), "t", Role.ADMIN))
    return schema_of(
        Settings(
            database_url="postgresql://unused@127.0.0.1/unused", tokens_file=tmp_path / "tokens"
        )
    )


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def problem_types(document: dict[str, Any], response: dict[str, Any]) -> set[str]:
    """The problem types a response declares (one schema, or a oneOf of them)."""
    schema = response["content"][PROBLEM]["schema"]
    refs = [variant["$ref"] for variant in schema.get("oneOf", [schema])]
    components = document["components"]["schemas"]
    return {components[ref.rpartition("/")[2]]["properties"]["type"]["const"] for ref in refs}


def test_the_schema_is_valid_openapi(document: dict[str, Any], secured: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)
    validate(secured)


def test_operations_have_clean_ids_summaries_and_described_parameters(
    document: dict[str, Any],
) -> None:
    found = {(method, path): op["operationId"] for method, path, op in operations(document)}
    assert found == OPERATIONS
    for method, path, operation in operations(document):
        assert operation["summary"], (method, path)
        assert len(operation["description"]) > 20, (method, path)
        for parameter in operation.get("parameters", []):
            assert parameter.get("description"), (method, path, parameter["name"])
            assert "anyOf" not in parameter["schema"], "a parameter is never null"
    assert {tag["name"] for tag in document["tags"]} >= {"ranges", "allocations", "events"}
    assert all(tag["description"] for tag in document["tags"])


def test_success_bodies_have_examples(document: dict[str, Any]) -> None:
    components = document["components"]["schemas"]
    for method, path, operation in operations(document):
        if "requestBody" in operation:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert components[ref.rpartition("/")[2]]["examples"], (method, path)
        for status, response in operation["responses"].items():
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            if status.startswith("2") and "$ref" in schema:
                assert components[schema["$ref"].rpartition("/")[2]]["examples"], (method, path)


def test_problem_types_are_an_enum_of_what_the_server_sends(document: dict[str, Any]) -> None:
    sent = (
        {error.type for error in STATUS}
        | set(HTTP_TYPES.values())
        | {HTTP_ERROR, INTERNAL_ERROR, BatchFailed.type}
    )
    assert {member.value for member in ProblemType} == sent
    components = document["components"]["schemas"]
    assert set(components["ProblemType"]["enum"]) == sent
    assert components["Problem"]["properties"]["type"] == {
        "$ref": "#/components/schemas/ProblemType"
    }
    for error, status in STATUS.items():
        schema = components[f"{error.__name__}Problem"]
        assert schema["properties"]["type"]["const"] == error.type
        assert schema["properties"]["status"]["const"] == status
        assert schema["examples"][0]["type"] == error.type
    failed = components["BatchFailedProblem"]
    assert failed["properties"]["status"]["enum"] == [404, 409, 422], "its first refusal's"


def test_each_response_names_its_problem_types_and_their_members(document: dict[str, Any]) -> None:
    allocate = document["paths"]["/v1/allocations"]["post"]["responses"]
    assert problem_types(document, allocate["409"]) == {
        "ip-already-allocated",
        "owner-has-allocation",
        "ip-cooling-down",
        "range-full",
        "range-not-allocatable",
    }
    assert problem_types(document, allocate["422"]) == {
        "invalid-request",
        "ip-not-in-range",
        "no-range-for-family",
    }
    assert problem_types(document, allocate["404"]) == {"range-not-found"}
    assert allocate["409"]["content"][PROBLEM]["schema"]["discriminator"]["propertyName"] == "type"
    components = document["components"]["schemas"]
    held = components["IPAlreadyAllocatedProblem"]
    assert held["properties"]["holder"]["type"] == "string"
    assert "holder" in held["required"]
    owned = components["OwnerHasAllocationProblem"]["properties"]["allocation"]
    assert owned == {
        "$ref": "#/components/schemas/AllocationRead",
        "description": owned["description"],
    }
    invalid = components["InvalidRequestProblem"]["properties"]["errors"]
    assert invalid["items"] == {"$ref": "#/components/schemas/FieldError"}
    release = document["paths"]["/v1/allocations/{ip}"]["delete"]["responses"]
    assert problem_types(document, release["409"]) == {"owner-mismatch"}
    events = document["paths"]["/v1/events"]["get"]["responses"]
    assert problem_types(document, events["410"]) == {"revision-compacted", "revision-unknown"}
    watch = document["paths"]["/v1/watch"]["get"]["responses"]
    assert problem_types(document, watch["429"]) == {"too-many-watchers"}
    batch = document["paths"]["/v1/allocations:batch"]["post"]
    assert problem_types(document, batch["responses"]["409"]) == {"batch-failed"}
    assert problem_types(document, batch["responses"]["422"]) == {"invalid-request", "batch-failed"}
    assert batch["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AllocationBatch"
    }
    assert components["AllocationBatch"]["properties"]["requests"]["maxItems"] == 1000
    assert components["BatchResults"]["examples"]
    patch = document["paths"]["/v1/ranges/{name}"]["patch"]["requestBody"]["content"]
    assert set(patch) == {"application/merge-patch+json", "application/json"}
    assert "Retry-After" in watch["429"]["headers"]


def test_every_v1_operation_declares_the_refusals_of_every_request(
    document: dict[str, Any],
) -> None:
    for method, path, operation in operations(document):
        responses = operation["responses"]
        for status, response in responses.items():
            if status[0] in "45" and path != "/readyz":
                assert set(response["content"]) == {PROBLEM}, (method, path, status)
        if not path.startswith("/v1"):
            continue
        assert "invalid-request" in problem_types(document, responses["422"]), (method, path)
        assert problem_types(document, responses["503"]) == {"database-unavailable"}
        assert "Retry-After" in responses["503"]["headers"]
        has_body = "requestBody" in operation
        assert ("413" in responses) == has_body, (method, path)


def test_auth_is_declared_as_the_server_enforces_it(
    document: dict[str, Any], secured: dict[str, Any]
) -> None:
    for method, path, operation in operations(document):
        assert "security" not in operation, (method, path)
        assert not {"401", "403"} & set(operation["responses"]), (method, path)
    for method, path, operation in operations(secured):
        if path.startswith("/v1"):
            assert operation["security"] == [{"HTTPBearer": []}], (method, path)
            assert problem_types(secured, operation["responses"]["401"]) == {"unauthorized"}
            assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
        else:
            assert "security" not in operation, (method, path)
    changes = secured["paths"]["/v1/allocations"]["post"]["responses"]
    assert problem_types(secured, changes["403"]) == {"forbidden"}


def test_probes_and_metrics_declare_their_bodies(document: dict[str, Any]) -> None:
    ready = document["paths"]["/readyz"]["get"]["responses"]
    health = {"$ref": "#/components/schemas/Health"}
    assert ready["200"]["content"]["application/json"]["schema"] == health
    assert ready["503"]["content"]["application/json"]["schema"] == health
    alive = document["paths"]["/healthz"]["get"]["responses"]
    assert alive["200"]["content"]["application/json"]["schema"] == health
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain; version=0.0.4"]


def test_the_ip_path_parameter_has_a_pattern(document: dict[str, Any]) -> None:
    (ip,) = document["paths"]["/v1/allocations/{ip}"]["get"]["parameters"]
    assert ip["schema"]["pattern"]


def test_the_family_is_one_component(document: dict[str, Any]) -> None:
    assert document["components"]["schemas"]["Family"]["enum"] == ["IPv4", "IPv6"]
    text = orjson.dumps(document).decode()
    assert text.count('"IPv6"]') == 1, "the enum is declared once"


def test_the_feed_is_typed(document: dict[str, Any]) -> None:
    components = document["components"]["schemas"]
    event = components["Event"]
    assert set(event["discriminator"]["mapping"]) == EVENT_TYPES
    assert len(event["oneOf"]) == len(EVENT_TYPES)
    bookmark = components["BookmarkEvent"]["properties"]
    assert bookmark["initial_end"]["type"] == "boolean"
    error = components["ErrorEvent"]["properties"]["problem"]
    assert set(error["discriminator"]["mapping"]) == {"revision-compacted", "revision-unknown"}
    polled = document["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
    assert polled["application/json"]["schema"] == {"$ref": "#/components/schemas/EventList"}
    assert components["EventList"]["properties"]["items"]["items"] == {
        "$ref": "#/components/schemas/Event"
    }


def test_the_watch_is_declared_as_a_stream_of_events() -> None:
    document = schema_of(
        Settings(database_url="postgresql://unused@127.0.0.1/unused", watch_timeout_seconds=42)
    )
    watch = document["paths"]["/v1/watch"]["get"]
    content = watch["responses"]["200"]["content"]
    assert set(content) == {"application/x-ndjson", "text/event-stream"}
    assert content["application/x-ndjson"]["x-itemSchema"] == {"$ref": "#/components/schemas/Event"}
    data = content["text/event-stream"]["x-itemSchema"]["properties"]["data"]
    assert data["contentSchema"] == {"$ref": "#/components/schemas/Event"}
    parameters = {p["name"]: p for p in watch["parameters"]}
    assert "accept" not in {name.lower() for name in parameters}
    assert parameters["timeout_seconds"]["schema"]["minimum"] == 1
    assert parameters["timeout_seconds"]["schema"]["maximum"] == 42


async def test_answers_are_what_the_schema_declares(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    declared = Declared(document)
    check = declared.check
    v4 = {"name": "default-ipv4", "cidr": "10.96.0.0/28"}
    check("createRange", await client.post("/v1/ranges", json=v4))
    check("createRange", await client.post("/v1/ranges", json=v4))  # range-exists
    check("createRange", await client.post("/v1/ranges", json={**v4, "name": "other"}))
    check("createRange", await client.post("/v1/ranges", json={"name": "x", "cidr": "10.0.0.5/8"}))
    check("listRanges", await client.get("/v1/ranges"))
    check("getRange", await client.get("/v1/ranges/default-ipv4"))
    check("getRange", await client.get("/v1/ranges/nope"))
    web = {"owner": "default/web", "metadata": {"port": 80}}
    check("allocate", await client.post("/v1/allocations", json=web))
    check("allocate", await client.post("/v1/allocations", json=web))  # 200, a retry
    dns = {"owner": "kube-system/kube-dns", "ip": "10.96.0.10"}
    check("allocate", await client.post("/v1/allocations", json=dns))
    check("allocate", await client.post("/v1/allocations", json={**dns, "owner": "copy"}))
    check("allocate", await client.post("/v1/allocations", json={**dns, "ip": "10.96.0.11"}))
    check("allocate", await client.post("/v1/allocations", json={"owner": "a", "range": "nope"}))
    check("allocate", await client.post("/v1/allocations", json={"owner": "a", "ip": "10.1.0.1"}))
    check("allocate", await client.post("/v1/allocations", json={"owner": "a", "family": "IPv6"}))
    check("allocate", await client.post("/v1/allocations", json={"owner": ""}))
    for n in range(14):
        full = check("allocate", await client.post("/v1/allocations", json={"owner": f"o{n}"}))
    assert full.json()["type"] == "range-full"
    check("getOccupancy", await client.get("/v1/ranges/default-ipv4/occupancy?cells=4"))
    check("listAllocations", await client.get("/v1/allocations?limit=2"))
    check("listAllocations", await client.get("/v1/allocations?range=nope"))
    check("getAllocation", await client.get("/v1/allocations/10.96.0.10"))
    check("getAllocation", await client.get("/v1/allocations/10.96.0.0"))
    check("getAllocation", await client.get("/v1/allocations/not-an-ip"))
    check("release", await client.delete("/v1/allocations/10.96.0.10?owner=default/web"))
    check("release", await client.delete("/v1/allocations/10.96.0.10?owner=kube-system/kube-dns"))
    check("release", await client.delete("/v1/allocations/10.96.0.10"))
    check("releaseOwner", await client.delete("/v1/allocations?owner=default/web"))
    check("deleteRange", await client.delete("/v1/ranges/default-ipv4"))
    check("listEvents", await client.get("/v1/events?since=0"))
    check("listEvents", await client.get("/v1/events?since=99999"))
    check("listEvents", await client.get("/v1/events?ownr=x"))
    check("watch", await client.get("/v1/watch?timeout_seconds=0"))
    check("watch", await client.get("/v1/watch?since=99999"))
    check("getHealth", await client.get("/healthz"))
    check("getReadiness", await client.get("/readyz"))
    owners = (await client.delete("/v1/allocations", params={"owner": "o0"})).json()["released"]
    assert len(owners) == 1
    check("deleteRange", await client.delete("/v1/ranges/nope"))

    stream = await client.get("/v1/watch", params={"initial": "true", "timeout_seconds": 1})
    check("watch", stream)  # 200: no JSON as a whole; each line is an Event
    item = document["paths"]["/v1/watch"]["get"]["responses"]["200"]["content"]
    lines = stream.text.splitlines()
    for line in lines:
        declared.validate(orjson.loads(line), item["application/x-ndjson"]["x-itemSchema"])
    types = [orjson.loads(line)["type"] for line in lines]
    assert types[:2] == ["RANGE_ADDED", "ALLOCATED"]
    assert "BOOKMARK" in types

    assert len(declared.checked) >= 30, sorted(declared.checked)


def test_an_answer_off_its_schema_is_refused(document: dict[str, Any]) -> None:
    """The check every API test's answers pass (tests/api/conftest.py) refuses a member the
    schema does not name, a status the operation does not declare, and a wrong type."""
    declared = Declared(document)
    request = httpx.Request("GET", "http://test/v1/ranges/default-ipv4")
    problem = {"type": "range-not-found", "title": "Range not found", "status": 404, "detail": "-"}

    def answer(status: int, body: dict[str, Any]) -> httpx.Response:
        headers = {"content-type": PROBLEM}
        return httpx.Response(status, content=orjson.dumps(body), headers=headers, request=request)

    declared.check_answer(answer(404, problem))
    for status, body in (
        (404, {**problem, "undeclared": 1}),
        (409, {**problem, "status": 409}),
        (404, {**problem, "detail": 7}),
    ):
        with pytest.raises(AssertionError):
            declared.check_answer(answer(status, body))
