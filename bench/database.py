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
        await connection.execute(
            "UPDATE ip_range SET allocated = 0, static_allocated = 0 WHERE id = $1", range_id
        )
    await vacuum(connection)


async def vacuum(connection: asyncpg.Connection) -> None:
    """Clear the dead rows of a bulk change: the allocator's own releases come one by one, and
    autovacuum keeps up with them, but the many thousands a shortcut deletes at once would make
    every lookup after it walk their index entries (up to twice the CPU per allocation)."""
    await connection.execute("VACUUM (ANALYZE) allocation, bitmap_block, ip_range")


def fill_offsets(geometry: ServiceRange, fraction: float, rng: random.Random) -> list[int]:
    """Return ``fraction`` of the usable offsets, the dynamic band first, as the allocator fills
    a range: scattered uniformly over the dynamic band, and only what it cannot hold in the
    static band (scattered over it too)."""
    count = round(geometry.size * fraction)
    dynamic, static = geometry.dynamic_band, geometry.static_band
    in_dynamic = min(count, dynamic.size)
    offsets = rng.sample(range(dynamic.first, dynamic.first + dynamic.size), in_dynamic)
    return offsets + rng.sample(range(static.first, static.first + static.size), count - in_dynamic)


async def fill(
    connection: asyncpg.Connection,
    range_names: str | list[str],
    fraction: float,
    rng: random.Random,
) -> int:
    """Allocate ``fraction`` of the addresses of empty eager ranges (see ``fill_offsets``), in
    one transaction; return how many addresses it allocated in all."""
    names = [range_names] if isinstance(range_names, str) else range_names
    rows = await connection.fetch(
        "SELECT id, name, cidr::text AS cidr, family FROM ip_range WHERE name = ANY($1::text[])",
        names,
    )
    now = datetime.now(UTC)
    revision = await connection.fetchval("SELECT revision FROM log_head")
    records: list[tuple[Any, ...]] = []
    blocks: list[tuple[int, int, int, bytes, int]] = []
    counts: list[tuple[int, int, int]] = []
    for row in rows:
        geometry = ServiceRange.of(parse_network(row["cidr"]), check_limits=False)
        offsets = fill_offsets(geometry, fraction, rng)
        network = int(geometry.network.network)
        address = ipaddress.IPv4Address if geometry.network.version == 4 else ipaddress.IPv6Address
        taken: dict[tuple[BandKind, int], int] = {}
        for offset in offsets:
            band = geometry.band_of(offset)
            block_no, bit = band.locate(offset)
            key = (band.kind, block_no)
            taken[key] = taken.get(key, 0) | 1 << bit
            owner = f"fill-{row['name']}-{offset}"
            records.append(
                (address(network + offset), row["family"], row["id"], owner, "{}", now, revision)
            )
        for (kind, block_no), bits in taken.items():
            size = geometry.band(kind).block_bits(block_no)
            filled = bits.to_bytes(len(empty_block(size)), "little")
            blocks.append((row["id"], int(kind), block_no, filled, size - bits.bit_count()))
        in_static = sum(1 for offset in offsets if geometry.static_band.contains(offset))
        counts.append((row["id"], len(offsets), in_static))
    if not records:
        return 0
    async with connection.transaction():
        await connection.copy_records_to_table(
            "allocation",
            records=records,
            columns=["ip", "family", "range_id", "owner", "metadata", "created_at", "revision"],
        )
        await connection.execute(
            "UPDATE bitmap_block b SET bits = u.bits, free = u.free"
            " FROM unnest($1::int[], $2::smallint[], $3::bigint[], $4::bytea[], $5::int[])"
            "   AS u(range_id, band, block_no, bits, free)"
            " WHERE b.range_id = u.range_id AND b.band = u.band AND b.block_no = u.block_no",
            *map(list, zip(*blocks, strict=True)),
        )
        await connection.execute(
            "UPDATE ip_range r SET allocated = u.allocated, static_allocated = u.static_allocated"
            " FROM unnest($1::int[], $2::bigint[], $3::bigint[])"
            "   AS u(id, allocated, static_allocated)"
            " WHERE r.id = u.id",
            *map(list, zip(*counts, strict=True)),
        )
    return len(records)


async def tables_size(connection: asyncpg.Connection) -> dict[str, int]:
    """Return ``pg_total_relation_size`` (table, indexes, TOAST) of each of our tables."""
    tables = ("ip_range", "bitmap_block", "allocation", "event", "log_head")
    return {
        table: int(await connection.fetchval("SELECT pg_total_relation_size($1)", table))
        for table in tables
    }
