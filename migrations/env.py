"""Alembic environment: migrations run on a connection handed over by ``allocator.store.migration``."""

from __future__ import annotations

from alembic import context

from allocator.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `allocator db upgrade`, which supplies the connection")

context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
