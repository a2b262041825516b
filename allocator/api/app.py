"""The application factory: nothing reads settings or opens an engine at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from allocator import __version__
from allocator.api import openapi, problems
from allocator.api.auth import Authenticator, Reads, audit
from allocator.api.collector import tune_for_serving
from allocator.api.feed import running_feed
from allocator.api.hot_path import HotPath
from allocator.api.limits import BATCH_PATH, BodyLimit, WatchLimiter
from allocator.api.metrics import Metrics
from allocator.api.middleware import RequestLog
from allocator.api.routes import allocations, events, health, occupancy, ranges
from allocator.api.routes import metrics as metrics_routes
from allocator.service.allocator import Allocator
from allocator.service.cooldown import keep_ending
from allocator.service.feed.watch import longest_timeout
from allocator.service.ranges import ensure_ranges, parse_default_ranges
from allocator.service.reader import Reader
from allocator.settings import Settings
from allocator.store import migration
from allocator.store.database import create_engine, create_pool, resolve_url

log = logging.getLogger(__name__)


def create_served_app() -> FastAPI:
    """``create_app`` for a server's worker process (``serve --workers``), with the collector
    tuned for serving (see ``collector``)."""
    app = create_app()
    tune_for_serving()
    return app


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    """Return the API. At start it opens the database (the embedded one when no URL is set),
    applies pending migrations (unless ``migrate`` is false) and creates the default ranges."""
    settings = settings or Settings()
    default_ranges = parse_default_ranges(settings.default_ranges)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url, embedded = await asyncio.to_thread(resolve_url, settings)
        engine = create_engine(url, settings)
        pool = await create_pool(url, settings)
        try:
            if migrate:
                await migration.upgrade(engine)
            for created in await ensure_ranges(engine, default_ranges):
                log.info("created default range %s %s", created.name, created.geometry.cidr)
            app.state.engine = engine
            app.state.allocator = Allocator(
                pool, max_group=settings.group_commit_max, acquire_timeout=settings.pool_timeout
            )
            app.state.reader = Reader(pool, settings.pool_timeout)
            app.state.embedded = embedded
            cooldowns = asyncio.create_task(
                keep_ending(engine, settings.cooldown_sweep_seconds), name="cool-downs"
            )
            try:
                async with running_feed(app, engine, pool, url, settings):
                    yield
            finally:
                cooldowns.cancel()
                await asyncio.gather(cooldowns, return_exceptions=True)
        finally:
            await pool.close()
            await engine.dispose()

    # The docs page loads Swagger UI (and /redoc ReDoc) from the server itself, not from a CDN:
    # it works on a control plane without internet access.
    app = FastAPIOffline(
        title="ClusterIP allocator",
        version=__version__,
        description="Unique Service VIPs from CIDR ranges, and an ordered event feed of every change.",
        lifespan=lifespan,
    )
    problems.install(app, settings.retry_after_seconds)
    app.state.authenticator = Authenticator.from_settings(settings)
    openapi.install(
        app,
        open_server=app.state.authenticator.open,
        watch_timeout_seconds=longest_timeout(settings.watch_timeout_seconds),
    )
    audit(logging.getLogger("allocator.change"))  # each change line names its principal
    app.state.watch_limiter = WatchLimiter(settings.max_watchers_per_token)
    # Innermost: allocations and releases that need nothing of the framework skip its routing.
    app.add_middleware(HotPath, retry_after_seconds=settings.retry_after_seconds)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        larger={BATCH_PATH: settings.max_batch_body_bytes},
    )
    app.state.metrics = Metrics()
    # Open watch streams, as the feed's tailer counts them (0 before it starts).
    app.state.metrics.watchers.set_function(
        lambda: getattr(getattr(app.state, "tailer", None), "watchers", 0)
    )
    # Outermost: the request id and the log line cover every other middleware's answers too.
    app.add_middleware(RequestLog, metrics=app.state.metrics)
    # Each route of ranges and allocations names the permission it needs (its one dependency,
    # which also refuses unknown query parameters); the feed only reads.
    app.include_router(ranges.router)
    app.include_router(allocations.router)
    app.include_router(events.router, dependencies=[Reads])
    app.include_router(health.router)  # probes need no token
    app.include_router(occupancy.router)
    app.include_router(metrics_routes.router)  # scraped like the probes, without a token
    return app
