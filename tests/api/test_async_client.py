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


async def test_dual_stack_and_batches_through_the_client(
    engine: AsyncEngine, settings: Settings
) -> None:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        AsyncAllocatorClient("http://test", transport=transport) as api,
    ):
        await api.create_range("v4", "10.0.0.0/30")  # two addresses
        await api.create_range("v6", "fd00::/120", release_cooldown_seconds=60)
        pair = await api.dual_stack("web", ips={"IPv6": "fd00::10"})
        assert [(a["family"], a["revision"]) for a in pair] == [("IPv4", 3), ("IPv6", 4)]
        assert pair[1]["ip"] == "fd00::10"
        await api.allocate("other")  # the last IPv4 address
        with pytest.raises(ProblemError) as refused:
            await api.dual_stack("api")
        assert (refused.value.status, refused.value.type) == (409, "batch-failed")
        assert refused.value.problem["errors"][0]["problem"]["type"] == "range-full"
        assert await api.list_allocations(owner="api") == {
            "items": [],
            "revision": 5,
            "next_cursor": None,
        }
        preferred = await api.dual_stack("api", policy="PreferDualStack")
        assert [a["family"] for a in preferred] == ["IPv6"], "what could be had"
        many = await api.allocate_many(
            [{"owner": "web"}, {"owner": "x", "family": "IPv6"}], atomic=False
        )
        assert [r["status"] for r in many["results"]] == [200, 201]
        assert many["revision"] == 7
        with pytest.raises(ValueError, match="policy"):
            await api.dual_stack("web", policy="SingleStack")
        changed = await api.change_range("v4", release_cooldown_seconds=30)
        assert changed["release_cooldown_seconds"] == 30
        await api.release_owner("api")
        assert (await api.get_range("v6"))["cooling"] == 1
