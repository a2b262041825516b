"""The database of one benchmark run: created fresh, dropped afterwards; and shortcuts to a fill
level that keep the store's invariants (bits, free counts, allocation rows, range count).

Shortcuts only ever prepare the state to measure from: every measured allocation goes through the
real code path.
"""

from __future__ import annotations

import ipaddress
import os
import random
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from allocator.domain.address import parse_network
from allocator.domain.band import BandKind
from allocator.domain.bitmap import empty_block
from allocator.domain.range import ServiceRange
from allocator.store.dsn import DatabaseUrl

ENV = "ALLOCATOR_BENCH_DATABASE_URL"


def plain_dsn(url: str) -> str:
    """Return ``url`` as libpq writes it (no driver name; several hosts as a ``host=`` list,
    which asyncpg reads too), for asyncpg and pgbench."""
    return DatabaseUrl.parse(url).libpq()


@asynccontextmanager
async def fresh_database(base: str | None) -> AsyncIterator[str]:
    """Yield the URL of a new database on the server of ``base`` (an embedded Postgres in a
    temporary directory when None); drop it afterwards."""
    server: Any = None
    if not base:
        from allocator.store.embedded import start_embedded

        base, server = start_embedded(
            Path(tempfile.mkdtemp(prefix="allocator-bench-")), cleanup="delete"
        )
    name = f"allocator_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(plain_dsn(base))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield DatabaseUrl.parse(base).with_database(name).libpq()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
        del server


def base_url(given: str | None) -> str | None:
    return given or os.environ.get(ENV) or None


async def release_all(connection: asyncpg.Connection, range_name: str) -> None:
    """Release every allocation of a range at once: rows gone, bits clear, counts back to zero."""
    async with connection.transaction():
        range_id = await connection.fetchval("SELECT id FROM ip_range WHERE name = $1", range_name)
        await connection.execute("DELETE FROM allocation WHERE range_id = $1", range_id)
        await connection.execute(
            "UPDATE bitmap_block SET free = free + bit_count(bits),"
            " bits = decode(repeat('00', length(bits)), 'hex') WHERE range_id = $1",
            range_id,
        )
        await connection.execute("UPDATE ip_range SET allocated = 0 WHERE id = $1", range_id)


async def fill(
    connection: asyncpg.Connection, range_name: str, fraction: float, rng: random.Random
) -> int:
    """Allocate ``fraction`` of an empty eager range's addresses, chosen uniformly at random over
    both bands (so the free ones are scattered over every block); return how many."""
    row = await connection.fetchrow(
        "SELECT id, cidr::text AS cidr, family FROM ip_range WHERE name = $1", range_name
    )
    geometry = ServiceRange.of(parse_network(row["cidr"]), check_limits=False)
    count = round(geometry.size * fraction)
    offsets = rng.sample(range(1, geometry.size + 1), count)
    blocks: dict[tuple[BandKind, int], int] = {}
    network = int(geometry.network.network)
    address = ipaddress.IPv4Address if geometry.network.version == 4 else ipaddress.IPv6Address
    now = datetime.now(UTC)
    revision = await connection.fetchval("SELECT revision FROM log_head")
    records = []
    for offset in offsets:
        band = geometry.band_of(offset)
        block_no, bit = band.locate(offset)
        key = (band.kind, block_no)
        blocks[key] = blocks.get(key, 0) | 1 << bit
        records.append(
            (
                address(network + offset),
                row["family"],
                row["id"],
                f"fill-{offset}",
                "{}",
                now,
                revision,
            )
        )
    updates = []
    for (kind, block_no), taken in blocks.items():
        size = geometry.band(kind).block_bits(block_no)
        updates.append(
            (
                int(kind),
                block_no,
                taken.to_bytes(len(empty_block(size)), "little"),
                size - taken.bit_count(),
            )
        )
    async with connection.transaction():
        await connection.copy_records_to_table(
            "allocation",
            records=records,
            columns=["ip", "family", "range_id", "owner", "metadata", "created_at", "revision"],
        )
        await connection.execute(
            "UPDATE bitmap_block b SET bits = u.bits, free = u.free"
            " FROM unnest($1::smallint[], $2::bigint[], $3::bytea[], $4::int[])"
            "   AS u(band, block_no, bits, free)"
            " WHERE b.range_id = $5 AND b.band = u.band AND b.block_no = u.block_no",
            [u[0] for u in updates],
            [u[1] for u in updates],
            [u[2] for u in updates],
            [u[3] for u in updates],
            row["id"],
        )
        await connection.execute(
            "UPDATE ip_range SET allocated = $1 WHERE id = $2", count, row["id"]
        )
    return count


async def tables_size(connection: asyncpg.Connection) -> dict[str, int]:
    """Return ``pg_total_relation_size`` (table, indexes, TOAST) of each of our tables."""
    tables = ("ip_range", "bitmap_block", "allocation", "event", "log_head")
    return {
        table: int(await connection.fetchval("SELECT pg_total_relation_size($1)", table))
        for table in tables
    }
