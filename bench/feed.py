"""Event delivery: commit-to-watcher delay at 1, 100 and 500 watchers on one server process,
measured by ``bench.feed_delay`` at a steady write rate."""

from __future__ import annotations

from typing import Any

from bench import database, feed_delay

WATCHERS = (1, 100, 500)


async def measure(base: str | None, quick: bool) -> dict[str, Any]:
    """Return ``{"median_ms_N", "p99_ms_N", "summary"}`` for each watcher count N, measured on
    a database of its own (the feed benchmark creates ranges that could overlap ours)."""
    writes = 20 if quick else 200
    try:
        async with database.fresh_database(base) as url:
            figures = await feed_delay.delivery_figures(url, WATCHERS, writes)
    except Exception as exc:  # the other figures stand; this one says why it is missing
        return {"status": "failed", "summary": f"failed: {exc!r}"}
    return {"watchers": list(WATCHERS), "writes": writes, **figures}
