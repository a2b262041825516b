"""Answers checked against the schema the server declares for them.

The routes send documents built without the pydantic models (encoded once, or as JSON built in
Postgres), so the models are only as true as these checks make them. ``Declared`` finds the
operation of a request in the app's own OpenAPI schema and validates the answer against the
response that operation declares for its status, strictly: an object member the schema does not
name is a failure too, so the schema cannot fall behind the documents.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import httpx
import orjson
from jsonschema.exceptions import best_match
from openapi_schema_validator import OAS31Validator

PROBLEM = "application/problem+json"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


def strict(schema: Any) -> Any:
    """Return ``schema`` with every object that names its members closed to others."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    if "properties" in closed and "additionalProperties" not in closed:
        closed["additionalProperties"] = False
    return closed


class Declared:
    """The responses an app's schema declares, and the check of answers against them."""

    def __init__(self, document: dict[str, Any], unlisted: tuple[str, ...] = ()) -> None:
        """``unlisted``: the paths (and mounts) served outside the schema, as the schema itself,
        its viewers and their assets are."""
        self.document = document
        self.unlisted = unlisted
        self.components = strict(copy.deepcopy(document.get("components", {})))
        self.by_id: dict[str, dict[str, Any]] = {}
        self.paths: list[tuple[re.Pattern[str], str, dict[str, Any]]] = []
        for path, item in document["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$")
            for method, operation in item.items():
                self.by_id[operation["operationId"]] = operation
                self.paths.append((pattern, method.upper(), operation))
        self.checked: set[tuple[str, int]] = set()

    def operation_of(self, request: httpx.Request) -> dict[str, Any] | None:
        """Return the operation that serves ``request``, None for a path or method it lacks."""
        for pattern, method, operation in self.paths:
            if method == request.method and pattern.match(request.url.path):
                return operation
        return None

    def check_answer(self, response: httpx.Response) -> None:
        """Check an answer against its operation's declared response; an answer to a path or
        method that no operation serves must be a problem document."""
        operation = self.operation_of(response.request)
        path = response.request.url.path
        if operation is None and any(path == p or path.startswith(p + "/") for p in self.unlisted):
            return
        if operation is None:
            assert response.status_code in (404, 405), response.request.url
            assert response.headers["content-type"] == PROBLEM
            self.validate(response.json(), {"$ref": "#/components/schemas/Problem"})
            return
        self.check(operation["operationId"], response)

    def check(self, operation_id: str, response: httpx.Response) -> httpx.Response:
        where = (operation_id, response.status_code)
        responses = self.by_id[operation_id]["responses"]
        assert str(response.status_code) in responses, (*where, response.text[:300])
        declared = responses[str(response.status_code)]
        self.checked.add(where)
        if not response.content:
            assert "content" not in declared, where
            return response
        media_type = response.headers["content-type"].partition(";")[0]
        content = declared.get("content", {})
        matching = [m for m in content if m.partition(";")[0] == media_type]
        assert matching, (*where, media_type)
        body = content[matching[0]]
        if media_type in ("application/json", PROBLEM):
            self.validate(response.json(), body["schema"])
        elif media_type == NDJSON:
            for line in response.text.splitlines():
                self.validate(orjson.loads(line), body["x-itemSchema"])
        elif media_type == SSE:
            data = body["x-itemSchema"]["properties"]["data"]["contentSchema"]
            for line in response.text.splitlines():
                if line.startswith("data:"):
                    self.validate(orjson.loads(line[5:]), data)
        return response

    def validate(self, instance: Any, schema: dict[str, Any]) -> None:
        root = {**strict(schema), "components": self.components}
        error = best_match(OAS31Validator(root).iter_errors(instance))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the document"
            raise AssertionError(f"{where}: {error.message}\n{orjson.dumps(instance)[:600]!r}")
