"""Event delivery: commit-to-watcher delay, measured by ``bench/feed_delay.py`` when it exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).parent / "feed_delay.py"


async def measure(database_url: str, quick: bool) -> dict[str, Any]:
    """Return the delivery figures at 1, 100 and 500 watchers, or ``{"status": "pending"}``."""
    if not SCRIPT.exists():
        return {"status": "pending", "summary": "pending: bench/feed_delay.py does not exist yet"}
    return {"status": "pending", "summary": "pending: bench/feed_delay.py not integrated yet"}
