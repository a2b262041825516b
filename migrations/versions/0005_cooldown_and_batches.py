"""Release cool-down per range, and batches of requests in one call of allocator_write.

The SQL lives in ``0005_cooldown_and_batches.sql`` beside this file.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from pathlib import Path

from alembic import op

from allocator.store.migration import execute_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(op.get_bind(), Path(__file__).with_suffix(".sql"))


def _definition_of_0002(name: str) -> str:
    source = Path(__file__).with_name("0002_write_path.sql").read_text()
    start = source.index(f"CREATE FUNCTION {name}(")
    return source[start : source.index("$$;", source.index("$$", start) + 2) + 3]


def downgrade() -> None:
    # Cooling addresses become free: migration 0004 knows no cool-down.
    op.execute("UPDATE cooling_address SET available_at = now()")
    op.execute("SELECT allocator_end_cooldowns(2147483647)")
    op.execute("DROP FUNCTION allocator_write(text[], text[], inet[], text[], text[], jsonb[], text, boolean)")
    for function in (
        "allocator_end_cooldowns(integer)",
        "allocator_extension(text, json, allocator_held, bigint)",
    ):
        op.execute(f"DROP FUNCTION {function}")
    bind = op.get_bind()
    bind.exec_driver_sql(_definition_of_0002("allocator_write"))
    bind.exec_driver_sql(
        _definition_of_0002("range_json").replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
    )
    op.execute("DROP TABLE cooling_address")
    op.execute(
        "ALTER TABLE ip_range DROP CONSTRAINT ck_ip_range_cooling,"
        " DROP CONSTRAINT ck_ip_range_release_cooldown_seconds,"
        " DROP COLUMN cooling, DROP COLUMN release_cooldown_seconds"
    )
