from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.declared import Declared


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
        if self.app not in declared:
            declared[self.app] = Declared(self.app.openapi())  # type: ignore[attr-defined]
        answer = httpx.Response(
            response.status_code, headers=response.headers, content=content, request=request
        )
        declared[self.app].check_answer(answer)
        return response

    monkeypatch.setattr(httpx.ASGITransport, "handle_async_request", checked)
