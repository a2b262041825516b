"""The async client, over the ASGI app in-process."""

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.api.app import create_app
from allocator.client import AsyncAllocatorClient, ProblemError
from allocator.settings import Settings


async def test_async_client_calls(engine: AsyncEngine, settings: Settings) -> None:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        AsyncAllocatorClient("http://test", transport=transport) as api,
    ):
        await api.create_range("v6", "fd00:10:96::/112")
        got = await api.allocate("default/web", family="IPv6")
        assert got["family"] == "IPv6"
        assert [a async for a in api.iter_allocations(family="IPv6")] == [got]
        with pytest.raises(ProblemError) as refused:
            await api.allocate("default/web", ip="fd00:10:96::5")
        assert refused.value.type == "owner-has-allocation"
        assert await api.release_owner("default/web") == [got]
