"""``docs/api.md`` says what the server does: its operations, each one's refusals, the problem
types, the events and the examples, compared with the app's own OpenAPI schema and the domain's
table of errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from allocator.api.app import create_app
from allocator.api.problems import HTTP_ERROR, HTTP_TYPES, INTERNAL_ERROR, STATUS
from allocator.domain.token import Role, new_token, record_for
from allocator.settings import Settings
from allocator.store.token_file import append_record
from tests.api.declared import PROBLEM, Declared

DOCUMENT = Path(__file__).parents[2] / "docs" / "api.md"

OPERATION = re.compile(r"^### `([A-Z]+) (/\S*)`$", re.M)
SECTION_END = re.compile(r"^##", re.M)
REFUSAL = re.compile(r"`([45]\d\d) ([a-z-]+)`")
PROBLEM_ROW = re.compile(r"^\| `([a-z-]+)` \| (\dxx|\d{3}|any) \|", re.M)
EVENT_ROW = re.compile(r"^\| `([A-Z_]+)` \|", re.M)
EXAMPLE = re.compile(r"(<!-- schema: (\w+) -->\n)?```json\n(.*?)```", re.S)
PATH = re.compile(r"(?<![\w.:/])(/(?:v1/|healthz|readyz|metrics)[^\s`)?\"',]*)")
FRAMEWORK_TYPES = {**{slug: str(status) for status, slug in HTTP_TYPES.items()}}
FRAMEWORK_TYPES |= {HTTP_ERROR: "any", INTERNAL_ERROR: "500"}


@pytest.fixture(scope="module")
def text() -> str:
    return DOCUMENT.read_text()


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The schema of a server with tokens: every refusal an operation can answer is declared."""
    tokens = tmp_path_factory.mktemp("tokens") / "tokens"
    append_record(tokens, record_for(new_token(), "t", Role.ADMIN))
    settings = Settings(database_url="postgresql://unused@127.0.0.1/unused", tokens_file=tokens)
    return create_app(settings).openapi()


def sections(text: str) -> dict[tuple[str, str], str]:
    """Return the text of each operation's section, by method and path."""
    found = {}
    for heading in OPERATION.finditer(text):
        end = SECTION_END.search(text, heading.end())
        found[(heading[1], heading[2])] = text[heading.end() : end.start() if end else None]
    return found


def declared_refusals(schema: dict[str, Any], operation: dict[str, Any]) -> set[tuple[str, str]]:
    components = schema["components"]["schemas"]
    refusals = set()
    for status, response in operation["responses"].items():
        body = response.get("content", {}).get(PROBLEM)
        if body is None:
            continue
        variants = body["schema"].get("oneOf", [body["schema"]])
        for variant in variants:
            model = components[variant["$ref"].rpartition("/")[2]]
            refusals.add((status, model["properties"]["type"]["const"]))
    return refusals


def test_every_operation_has_a_section(text: str, schema: dict[str, Any]) -> None:
    served = {(m.upper(), path) for path, item in schema["paths"].items() for m in item}
    assert set(sections(text)) == served


def test_each_section_names_the_refusals_its_operation_declares(
    text: str, schema: dict[str, Any]
) -> None:
    for (method, path), section in sections(text).items():
        operation = schema["paths"][path][method.lower()]
        named = set(REFUSAL.findall(section))
        assert named == declared_refusals(schema, operation), (method, path)


def test_the_problem_types_are_the_domains(text: str, schema: dict[str, Any]) -> None:
    table = dict(PROBLEM_ROW.findall(text))
    domain = {error.type: str(status) for error, status in STATUS.items()}
    sent = set(schema["components"]["schemas"]["ProblemType"]["enum"])
    # Types whose status is another refusal's (a batch's): any of their class.
    varying = dict.fromkeys(sent - set(domain) - set(FRAMEWORK_TYPES), "4xx")
    assert table == domain | FRAMEWORK_TYPES | varying
    assert set(table) == sent
    for slug_status in REFUSAL.findall(text):
        status, slug = slug_status
        assert table[slug] in (status, f"{status[0]}xx"), slug_status


def test_the_events_are_the_feeds(text: str, schema: dict[str, Any]) -> None:
    feed = text[text.index("## The event feed") : text.index("## Probes and metrics")]
    event = schema["components"]["schemas"]["Event"]
    assert set(EVENT_ROW.findall(feed)) == set(event["discriminator"]["mapping"])


def documents(example: str) -> list[Any]:
    """Return the JSON document of an example, or each line's when it is one per line."""
    try:
        return [orjson.loads(example)]
    except orjson.JSONDecodeError:
        return [orjson.loads(line) for line in example.splitlines() if line.strip()]


def test_every_example_is_what_its_schema_says(text: str, schema: dict[str, Any]) -> None:
    declared = Declared(schema)
    examples = EXAMPLE.findall(text)
    assert len(examples) >= 20
    for _, model, example in examples:
        assert model, f"an example names no schema: {example[:80]}"
        for document in documents(example):
            declared.validate(document, {"$ref": f"#/components/schemas/{model}"})


def test_every_path_named_is_served(text: str, schema: dict[str, Any]) -> None:
    templates = [re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", p) + "$") for p in schema["paths"]]
    named = set(PATH.findall(text))
    assert "/v1/ranges/{name}/occupancy" in named
    for path in named:
        assert any(template.match(path) for template in templates), path
