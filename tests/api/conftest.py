from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.declared import Declared


def unlisted(app: Any) -> tuple[str, ...]:
    """The paths an app serves outside its schema: routes left out of it, and mounts."""
    return tuple(
        route.path
        for route in app.routes
        if getattr(route, "path", None) and not getattr(route, "include_in_schema", False)
    )


@pytest.fixture(autouse=True)
def answers_as_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check every answer an API test gets from an app against the schema that app declares
    (``tests.api.declared``): each status, media type and body of every test's requests.

    The tests reach their apps through ``httpx.ASGITransport``, which collects the whole body (a
    watch stream ends by its ``timeout_seconds``) before it returns, so the answer can be read
    here and read again by the test.
    """
    handle = httpx.ASGITransport.handle_async_request
    declared: dict[Any, Declared] = {}

    async def checked(self: httpx.ASGITransport, request: httpx.Request) -> httpx.Response:
        response = await handle(self, request)
        content = await response.aread()
        app: Any = self.app
        if app not in declared:
            declared[app] = Declared(app.openapi(), unlisted(app))
        answer = httpx.Response(
            response.status_code, headers=response.headers, content=content, request=request
        )
        declared[app].check_answer(answer)
        return response

    monkeypatch.setattr(httpx.ASGITransport, "handle_async_request", checked)
