"""The write path without planning on every call: inlinable helpers, fewer queries per write.

The SQL lives in ``0007_write_without_planning.sql`` beside this file.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from pathlib import Path

from alembic import op

from allocator.store.migration import execute_script, function_definition

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    execute_script(op.get_bind(), Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    # Migration 0006's forms: the same results, only slower.
    bind = op.get_bind()
    bind.exec_driver_sql(function_definition(HERE / "0006_range_lifecycle.sql", "allocator_write"))
    for name in ("allocator_offset", "allocator_address"):
        bind.exec_driver_sql(function_definition(HERE / "0002_write_path.sql", name))
    op.execute("ALTER FUNCTION allocator_json(allocator_held, bigint) IMMUTABLE")
    op.execute("ALTER FUNCTION allocator_time(timestamptz) IMMUTABLE")
    op.execute("ALTER FUNCTION allocator_extension(text, json, allocator_held, bigint) IMMUTABLE")
