"""The write function's plans read by index whatever the tables held when they were made.

``allocator_write`` plans each of its statements once per connection (migration 0007). A plan
made while a table is small is a plan for a small table: a connection that wrote its first
allocations into a nearly empty database kept plans that scan ``allocation`` whole and join
by hashing (the revision update over the made allocations, the owner's allocations of a
release), and ran them on every later write, however many allocations there were by then:
with 40,000 allocations a write cost the backend 6 ms instead of 0.7 ms. Every statement of the
function is a key lookup or an ordered index scan at any size, so the function's own settings
forbid the plans that only pay on small tables: sequential scans where an index serves, hash
and merge joins. JIT is off too: with sequential scans priced as forbidden, the few lookups with
no index to use (the ranges of a family) cost more than JIT's threshold, and compiling them cost
far more than running them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

FUNCTION = "allocator_write(text[], text[], inet[], text[], text[], jsonb[], text, boolean)"
SETTINGS = {
    "enable_seqscan": "off",
    "enable_hashjoin": "off",
    "enable_mergejoin": "off",
    "jit": "off",
}


def upgrade() -> None:
    assignments = " ".join(f"SET {name} = {value}" for name, value in SETTINGS.items())
    op.execute(f"ALTER FUNCTION {FUNCTION} {assignments}")


def downgrade() -> None:
    for name in SETTINGS:
        op.execute(f"ALTER FUNCTION {FUNCTION} RESET {name}")
