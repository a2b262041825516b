"""The feed's background work in a server process: the tailer, its listener and retention."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.api.problems import document_of
from allocator.service.retention import RetentionPolicy, keep_compacting
from allocator.service.tailer import Tailer
from allocator.service.watch import WatchOptions
from allocator.settings import Settings
from allocator.store.listener import Listener, dsn_of

START_TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def running_feed(
    app: FastAPI, engine: AsyncEngine, settings: Settings
) -> AsyncIterator[None]:
    """Run the tailer (with its LISTEN connection) and retention while the app serves."""
    tailer = Tailer(engine, poll_interval=settings.feed_poll_interval, window=settings.feed_window)
    listener = Listener(dsn_of(engine.url), tailer.wake, connect_timeout=settings.connect_timeout)
    policy = RetentionPolicy(
        keep_seconds=settings.event_retention_seconds,
        keep_count=settings.event_retention_count,
        batch=settings.compaction_batch,
    )
    tasks = [
        asyncio.create_task(tailer.run(), name="event tailer"),
        asyncio.create_task(listener.run(), name="event listener"),
        asyncio.create_task(
            keep_compacting(engine, policy, settings.compaction_interval_seconds),
            name="event retention",
        ),
    ]
    app.state.tailer = tailer
    app.state.listener = listener
    app.state.watch_options = WatchOptions(
        queue=settings.watch_queue,
        bookmark_seconds=settings.watch_bookmark_seconds,
        timeout_seconds=settings.watch_timeout_seconds,
        problem_of=document_of,
    )
    app.state.watch_send_timeout = settings.watch_send_timeout_seconds
    try:
        started = asyncio.create_task(tailer.started.wait())
        done, _ = await asyncio.wait(
            [started, tasks[0]], timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if tasks[0] in done:
            tasks[0].result()  # the tailer could not start: raise why
        started.cancel()
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
