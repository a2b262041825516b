"""Retention: delete events older than a configured age or beyond a configured count.

Deletion runs in small batches, each its own short transaction, and touches ``log_head`` only
with the update of ``compacted`` at the very end of each batch, so allocations never wait on it
for longer than on any other writer. A watcher asking for a deleted revision gets 410
``revision-compacted`` and lists again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.service.unit_of_work import run
from allocator.store.event_log import compact

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    keep_seconds: float
    keep_count: int
    batch: int
    max_batches: int = 100
    """Per round, so that one round stays short even after a long pause."""


async def compact_once(engine: AsyncEngine, policy: RetentionPolicy) -> int:
    """Delete what the policy no longer keeps, batch by batch; return how many events."""
    deleted = 0

    async def work(connection: AsyncConnection) -> int:
        return await compact(
            connection,
            keep_count=policy.keep_count,
            older_than=datetime.now(UTC) - timedelta(seconds=policy.keep_seconds),
            batch=policy.batch,
        )

    for _ in range(policy.max_batches):
        batch = await run(engine, work)
        deleted += batch
        if batch < policy.batch:
            break
    return deleted


async def keep_compacting(engine: AsyncEngine, policy: RetentionPolicy, interval: float) -> None:
    """Compact every ``interval`` seconds until cancelled; failures are logged and retried."""
    while True:
        try:
            deleted = await compact_once(engine, policy)
            if deleted:
                log.info("compacted %d events", deleted)
        except Exception as exc:
            log.warning("event compaction failed: %s", exc)
        await asyncio.sleep(interval)
