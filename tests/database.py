"""A fresh Postgres database for one test run, dropped at its end.

``ALLOCATOR_TEST_DATABASE_URL`` names a server to create it on (for example the machine's
``postgresql://postgres@127.0.0.1:5432/test``); unset, an embedded Postgres is started in a
temporary directory and deleted afterwards.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.settings import Settings
from allocator.store.dsn import DatabaseUrl, connector
from allocator.store.embedded import start_embedded


async def _admin(url: str, statement: str) -> None:
    connection = await connector(url, Settings())()
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def fresh_database() -> Iterator[str]:
    """Yield the URL of a new, empty database; drop it afterwards."""
    import asyncio

    server = None
    base = os.environ.get("ALLOCATOR_TEST_DATABASE_URL")
    if not base:
        base, server = start_embedded(
            Path(tempfile.mkdtemp(prefix="allocator-pg-")), cleanup="delete"
        )
    name = f"allocator_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
    try:
        yield DatabaseUrl.parse(base).with_database(name).libpq()
    finally:
        asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        del server


async def empty_tables(engine: AsyncEngine) -> None:
    """Empty every table and reset the log, as on a new database."""
    async with engine.begin() as connection:
        await connection.execute(
            text("TRUNCATE allocation, bitmap_block, ip_range, event RESTART IDENTITY CASCADE")
        )
        await connection.execute(
            text("UPDATE log_head SET revision = 0, compacted = 0, timeline = log_timeline()")
        )
        # One epoch, as after the migrations: tests may have started others.
        await connection.execute(text("DELETE FROM log_epoch"))
        await connection.execute(
            text(
                "INSERT INTO log_epoch (epoch, timeline, first_revision)"
                " SELECT epoch, timeline, 1 FROM log_head"
            )
        )
