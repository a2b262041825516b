"""The feed's background work in a server process: the tailer, its listener and retention."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.api.problems import document_of
from allocator.service.feed.retention import RetentionPolicy, keep_compacting
from allocator.service.feed.shared_reads import SharedReads
from allocator.service.feed.tailer import Tailer
from allocator.service.feed.watch import WatchOptions
from allocator.settings import Settings
from allocator.store.dsn import connector
from allocator.store.listener import APPLICATION_NAME, Listener

START_TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def running_feed(
    app: FastAPI, engine: AsyncEngine, pool: Any, url: str, settings: Settings
) -> AsyncIterator[None]:
    """Run the tailer (reading on the asyncpg ``pool``, with its LISTEN connection to ``url``)
    and retention while the app serves."""
    tailer = Tailer(
        pool,
        acquire_timeout=settings.pool_timeout,
        poll_interval=settings.feed_poll_interval,
        window=settings.feed_window,
        bookmark_seconds=settings.watch_bookmark_seconds,
    )
    listener = Listener(connector(url, settings, APPLICATION_NAME), tailer.wake)
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
    app.state.shared_reads = SharedReads(tailer)
    app.state.listener = listener
    app.state.metrics.listener_up.set_function(lambda: int(listener.connected))
    app.state.watch_options = WatchOptions(
        queue=settings.watch_queue,
        timeout_seconds=settings.watch_timeout_seconds,
        problem_of=document_of,
    )
    app.state.watch_send_timeout = settings.watch_send_timeout_seconds
    restore = _end_streams_on_exit_signals(tailer)
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
        restore()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _end_streams_on_exit_signals(tailer: Tailer) -> Callable[[], None]:
    """Chain SIGTERM and SIGINT to end the watch streams; return what restores the handlers.

    A server stopping gracefully waits for its open responses, and a watch never ends on its own
    for minutes: without this, stopping a replica would wait for its watchers' timeouts.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(tailer.shut_down)
        chained = previous[signal.Signals(sig)]
        if callable(chained):
            chained(sig, frame)
        else:  # the default action (or none): as if this handler were not there
            signal.signal(sig, chained)
            signal.raise_signal(sig)

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, original in previous.items():
            signal.signal(sig, original)

    return restore
