"""Cooling addresses: released ones that no other owner may take yet (migration 0005).

A cooling address keeps its bit set and has a ``cooling_address`` row saying who released it and
until when; ``allocator_end_cooldowns`` clears the bits of those whose time is over.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_END = text("SELECT allocator_end_cooldowns(:most)")


async def end_cooldowns(connection: AsyncConnection, most: int) -> int:
    """Free up to ``most`` addresses whose cool-down is over, the oldest first; return how many.

    Blocks another transaction holds are skipped (their addresses wait for the next round), so
    replicas running this at once never wait for each other nor free an address twice.
    """
    return int((await connection.execute(_END, {"most": most})).scalar_one())
