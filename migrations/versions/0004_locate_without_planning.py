"""allocator_locate in PL/pgSQL, so that it is not planned again on every call.

The SQL lives in ``0004_locate_without_planning.sql`` beside this file.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from pathlib import Path

from alembic import op

from allocator.store.migration import execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(op.get_bind(), Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    # Migration 0002's form: correct, only slower.
    source = Path(__file__).with_name("0002_write_path.sql").read_text()
    start = source.index("CREATE FUNCTION allocator_locate")
    definition = source[start : source.index("$$;", start) + 3]
    op.get_bind().exec_driver_sql(
        definition.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
    )
