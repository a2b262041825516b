"""The write function's plans read by index whatever the tables held when they were made.

The SQL lives in ``0008_write_plans_by_index.sql`` beside this file.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from pathlib import Path

from alembic import op

from allocator.store.migration import execute_script, function_definition

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    execute_script(op.get_bind(), Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    # Migration 0007's form: the same results, with plans as good as the tables were large when
    # each connection made them.
    op.get_bind().exec_driver_sql(
        function_definition(HERE / "0007_write_without_planning.sql", "allocator_write")
    )
