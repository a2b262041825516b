"""``allocator.store.schema`` is the schema the migrations make: Alembic's comparison of the
migrated test database with the metadata finds nothing to change."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.store.schema import metadata


def differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


async def test_the_metadata_is_what_the_migrations_make(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        found = await connection.run_sync(differences)
    assert found == []


async def test_a_drift_is_found(engine: AsyncEngine) -> None:
    """The comparison sees what a migration could add behind the metadata's back: a column, an
    index, a changed default (checked in a transaction that is rolled back)."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            await connection.execute(text("ALTER TABLE ip_range ADD COLUMN drift integer"))
            await connection.execute(text("CREATE INDEX ix_drift ON allocation (owner)"))
            await connection.execute(
                text("ALTER TABLE log_head ALTER COLUMN compacted SET DEFAULT 7")
            )
            found = await connection.run_sync(differences)
        finally:
            await transaction.rollback()
    kinds = {(d[0] if isinstance(d, tuple) else d[0][0]) for d in found}
    assert {"remove_column", "remove_index", "modify_default"} <= kinds, found
