"""Range lifecycle: a range's geometry changes under a lock every write shares; drained ranges.

The SQL lives in ``0006_range_lifecycle.sql`` beside this file.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from pathlib import Path

from alembic import op

from allocator.store.migration import execute_script, function_definition

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent
EARLIER = (
    ("0005_cooldown_and_batches.sql", "allocator_write"),
    ("0005_cooldown_and_batches.sql", "range_json"),
    ("0002_write_path.sql", "allocator_next_range"),
)
FUNCTIONS = (
    "allocator_drained(ip_range)",
    "allocator_require_shared(integer, integer[])",
    "allocator_share_ranges(text[], text[], inet[], text[])",
    "allocator_addressed(text[], text[], inet[], text[])",
    "allocator_share_range(text)",
    "allocator_range_lock(integer)",
    "allocator_share_range_lock(integer)",
)


def upgrade() -> None:
    execute_script(op.get_bind(), Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    # Drained ranges serve again: migration 0005 knows no drain.
    bind = op.get_bind()
    for file, name in EARLIER:
        bind.exec_driver_sql(function_definition(HERE / file, name))
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
    op.execute("DROP INDEX ix_ip_range_dynamic_free")
    op.execute("DROP INDEX ix_ip_range_static_free")
    op.execute(
        "CREATE INDEX ix_ip_range_dynamic_free ON ip_range (family, name)"
        " WHERE allocated - static_allocated < size - static_size"
    )
    op.execute(
        "CREATE INDEX ix_ip_range_static_free ON ip_range (family, name)"
        " WHERE static_allocated < static_size"
    )
    op.execute("ALTER TABLE ip_range DROP COLUMN allocatable")
