"""One round trip per write: allocator_write and the functions it is made of; range geometry
(size, static_allocated) kept where an index finds a range with room.

The SQL lives in ``0002_write_path.sql`` beside this file, as it is installed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from pathlib import Path

from alembic import op

from allocator.store.migration import execute_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FUNCTIONS = (
    "allocator_write(text[], text[], inet[], text[], text[], jsonb[])",
    "allocator_refusal(integer, text, text, json)",
    "allocator_pick(ip_range, smallint, boolean)",
    "allocator_empty_block(integer)",
    "allocator_next_range(text, smallint, text)",
    "allocator_band_room(ip_range, smallint)",
    "allocator_locate(ip_range, inet)",
    "allocator_block_bits(ip_range, smallint, bigint)",
    "allocator_eager(ip_range)",
    "allocator_band_size(ip_range, smallint)",
    "allocator_band_first(ip_range, smallint)",
    "range_json(ip_range)",
    "allocator_json(allocator_held, bigint)",
    "allocator_time(timestamptz)",
    "allocator_free_bit(bytea, integer, integer)",
    "allocator_address(cidr, numeric)",
    "allocator_offset(inet, cidr)",
)
TYPES = (
    "allocator_draft",
    "allocator_outcome",
    "allocator_spot",
    "allocator_place",
    "allocator_held",
)


def upgrade() -> None:
    execute_script(op.get_bind(), Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
    for type_ in TYPES:
        op.execute(f"DROP TYPE {type_}")
    op.execute("DROP INDEX ix_ip_range_static_free")
    op.execute("DROP INDEX ix_ip_range_dynamic_free")
    op.execute(
        "ALTER TABLE ip_range DROP CONSTRAINT ck_ip_range_static_allocated,"
        " DROP COLUMN static_allocated, DROP COLUMN size"
    )
