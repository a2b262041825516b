"""The tables as the migrations leave them, as SQLAlchemy metadata.

The migrations in ``migrations/`` make the schema by hand-written DDL, and the store's statements
are SQL text (and the write path's functions), so nothing queries through these objects: they
are Alembic's ``target_metadata``, the one place that lists every column, key, constraint and
index in Python. ``tests/integration/test_schema.py`` compares them with a migrated database
(``alembic.autogenerate.compare_metadata``), so a migration that changes a table changes them too.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import CIDR, INET, JSON, JSONB, ExcludeConstraint

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ip_range = Table(
    "ip_range",
    metadata,
    Column("id", Integer, Identity(always=False), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("cidr", CIDR, nullable=False),
    Column("family", Text, nullable=False),
    Column("static_size", Integer, nullable=False),
    Column("allocated", BigInteger, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revision", BigInteger, nullable=False),
    # Migration 0002: the usable size, and how many allocations lie in the static band.
    Column("size", Numeric, nullable=False),
    Column("static_allocated", BigInteger, nullable=False, server_default=text("0")),
    # Migration 0005: the release cool-down, and how many addresses cool down.
    Column("release_cooldown_seconds", Integer, nullable=False, server_default=text("0")),
    Column("cooling", BigInteger, nullable=False, server_default=text("0")),
    # Migration 0006: false while the range is drained (it serves no new allocation).
    Column("allocatable", Boolean, nullable=False, server_default=text("true")),
    CheckConstraint("family IN ('IPv4', 'IPv6')", name="family"),
    CheckConstraint("allocated >= 0", name="allocated"),
    CheckConstraint(
        "static_allocated >= 0 AND static_allocated <= allocated", name="static_allocated"
    ),
    CheckConstraint(
        "release_cooldown_seconds BETWEEN 0 AND 86400", name="release_cooldown_seconds"
    ),
    CheckConstraint("cooling >= 0", name="cooling"),
    ExcludeConstraint(
        (Column("cidr"), "&&"),
        using="gist",
        name="ex_ip_range_cidr_overlap",
        ops={"cidr": "inet_ops"},
    ),
    # The ranges a request naming none tries, in order: first the allocatable ones whose dynamic
    # band has room, then those whose static band has.
    Index(
        "ix_ip_range_dynamic_free",
        "family",
        "name",
        postgresql_where=text("allocated - static_allocated < size - static_size AND allocatable"),
    ),
    Index(
        "ix_ip_range_static_free",
        "family",
        "name",
        postgresql_where=text("static_allocated < static_size AND allocatable"),
    ),
)

bitmap_block = Table(
    "bitmap_block",
    metadata,
    Column("range_id", Integer, ForeignKey("ip_range.id", ondelete="CASCADE"), nullable=False),
    Column("band", SmallInteger, nullable=False),
    Column("block_no", BigInteger, nullable=False),
    Column("bits", LargeBinary, nullable=False),
    Column("free", Integer, nullable=False),
    PrimaryKeyConstraint("range_id", "band", "block_no"),
    CheckConstraint("free >= 0", name="free"),
    Index(
        "ix_bitmap_block_free", "range_id", "band", "block_no", postgresql_where=text("free > 0")
    ),
)

allocation = Table(
    "allocation",
    metadata,
    Column("ip", INET, primary_key=True),
    Column("family", Text, nullable=False),
    Column("range_id", Integer, ForeignKey("ip_range.id"), nullable=False),
    Column("owner", Text, nullable=False),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revision", BigInteger, nullable=False),
    UniqueConstraint("owner", "family"),
    Index("ix_allocation_range_id_ip", "range_id", "ip"),
)

# A released address of a range with a cool-down (migration 0005): its bit stays set until
# ``available_at``.
cooling_address = Table(
    "cooling_address",
    metadata,
    Column("ip", INET, primary_key=True),
    Column("range_id", Integer, ForeignKey("ip_range.id", ondelete="CASCADE"), nullable=False),
    Column("released_by", Text, nullable=False),
    Column("released_at", DateTime(timezone=True), nullable=False),
    Column("available_at", DateTime(timezone=True), nullable=False),
    Index("ix_cooling_address_available_at", "available_at"),
    Index("ix_cooling_address_range_id_ip", "range_id", "ip"),
)

event = Table(
    "event",
    metadata,
    Column("revision", BigInteger, primary_key=True, autoincrement=False),
    Column("type", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

log_head = Table(
    "log_head",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("revision", BigInteger, nullable=False),
    Column("compacted", BigInteger, nullable=False, server_default=text("0")),
    Column("epoch", Uuid, nullable=False),
    Column("timeline", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

# One row per epoch of the log (see migration 0003): revisions from ``first_revision`` up to the
# next epoch's were handed out on ``timeline``.
log_epoch = Table(
    "log_epoch",
    metadata,
    Column("epoch", Uuid, primary_key=True),
    Column("timeline", BigInteger, nullable=False),
    Column("first_revision", BigInteger, nullable=False, unique=True),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)
