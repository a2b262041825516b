"""The end of cool-downs: every replica frees the addresses whose cool-down is over, every
``interval`` seconds, so they become free again with no request arriving."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.service.unit_of_work import run
from allocator.store.cooling import end_cooldowns

log = logging.getLogger(__name__)

ROUND = 1000
"""Addresses freed per transaction: a round's locks stay short after a mass release."""


async def end_due(engine: AsyncEngine) -> int:
    """Free every address whose cool-down is over (but those in blocks held meanwhile by other
    transactions, left for the next call); return how many."""
    freed = 0

    async def work(connection: AsyncConnection) -> int:
        return await end_cooldowns(connection, ROUND)

    while (count := await run(engine, work)) == ROUND:
        freed += count
    return freed + count


async def keep_ending(engine: AsyncEngine, interval: float) -> None:
    """End due cool-downs every ``interval`` seconds until cancelled; failures are logged."""
    while True:
        try:
            freed = await end_due(engine)
            if freed:
                log.debug("%d addresses cooled down", freed)
        except Exception as exc:
            log.warning("ending cool-downs failed: %s", exc)
        await asyncio.sleep(interval)
