"""Allocations: rows of ``allocation``, and the two writes that keep bit, row, count and log in step.

``record_allocations`` (one allocation or a batch; ``record_allocation`` is its one-allocation
form) and ``record_release`` are each one statement that changes the blocks' bits, the ranges'
counts, the allocation rows and appends the events, the head bump last of all (see
``allocator.store.event_log``). Callers hold the block lock (allocation) or the allocation row
lock (release) before calling, so the statement only confirms what they checked.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import netaddr
import orjson
from sqlalchemy import Row, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from allocator.domain.address import Family
from allocator.domain.band import BandKind
from allocator.domain.model import Allocation
from allocator.store.event_log import bump_head, event_json

_COLUMNS = (
    "a.ip, a.family, r.name AS range, a.owner, a.metadata, a.created_at, a.revision,"
    " a.range_id, r.cidr"
)
_FROM = "allocation a JOIN ip_range r ON r.id = a.range_id"

_BY_IP = text(f"SELECT {_COLUMNS} FROM {_FROM} WHERE a.ip = CAST(:ip AS inet)")
_BY_IP_LOCKED = text(
    f"SELECT {_COLUMNS} FROM {_FROM} WHERE a.ip = CAST(:ip AS inet) FOR UPDATE OF a"
)
_BY_OWNER = text(f"SELECT {_COLUMNS} FROM {_FROM} WHERE a.owner = :owner AND a.family = :family")
_OF_OWNER_LOCKED = text(
    f"SELECT {_COLUMNS} FROM {_FROM} WHERE a.owner = :owner ORDER BY a.ip FOR UPDATE OF a"
)

_BY_OWNERS = text(
    f"SELECT {_COLUMNS} FROM {_FROM} WHERE (a.owner, a.family) IN"
    " (SELECT * FROM unnest(CAST(:owners AS text[]), CAST(:families AS text[])))"
)


@functools.cache
def _record_allocations(n: int) -> TextClause:
    """Return the statement storing a batch of ``n`` allocations: every block's new bits, each
    range's count, one head bump of ``n``, then the n rows and n events numbered from it, in
    request order. The joins on the counts of the earlier CTEs force the lock order every writer
    uses: blocks, ranges, head. (One text per ``n``: the head bump takes its count literally.)"""
    return text(
        "WITH block AS ("
        "  UPDATE bitmap_block b SET bits = u.bits, free = b.free - u.taken"
        "  FROM unnest(CAST(:block_ranges AS integer[]), CAST(:block_bands AS smallint[]),"
        "   CAST(:block_nos AS bigint[]), CAST(:block_bits AS bytea[]), CAST(:block_taken AS integer[]))"
        "   AS u(range_id, band, block_no, bits, taken)"
        "  WHERE b.range_id = u.range_id AND b.band = u.band AND b.block_no = u.block_no"
        "  RETURNING b.range_id),"
        " counted AS ("
        "  UPDATE ip_range SET allocated = allocated + c.n"
        "  FROM (SELECT range_id, count(*) AS n FROM unnest(CAST(:range_ids AS integer[])) AS range_id"
        "   GROUP BY range_id) c, (SELECT count(*) AS blocks FROM block) locked"
        "  WHERE ip_range.id = c.range_id RETURNING ip_range.id),"
        " done AS (SELECT count(*) AS ranges FROM counted),"
        f" head AS ({bump_head(n, after='done')}),"
        " input AS ("
        f"  SELECT i.*, head.revision - {n} + i.n AS revision FROM head, unnest("
        "   CAST(:ips AS inet[]), CAST(:families AS text[]), CAST(:range_ids AS integer[]),"
        "   CAST(:owners AS text[]), CAST(:metadata AS jsonb[]), CAST(:created_at AS timestamptz[]),"
        "   CAST(:documents AS jsonb[]))"
        "   WITH ORDINALITY AS i(ip, family, range_id, owner, metadata, created_at, document, n)),"
        " row AS ("
        "  INSERT INTO allocation (ip, family, range_id, owner, metadata, created_at, revision)"
        "  SELECT ip, family, range_id, owner, metadata, created_at, revision FROM input"
        "  RETURNING revision)"
        " INSERT INTO event (revision, type, payload)"
        " SELECT head.revision, 'ALLOCATED',"
        f" {event_json('ALLOCATED', 'allocation', 'head.document', stamp=True)}"
        " FROM input AS head ORDER BY head.revision RETURNING revision"
    )


_RECORD_RELEASE = text(
    "WITH gone AS ("
    "  DELETE FROM allocation WHERE ip = CAST(:ip AS inet) RETURNING range_id),"
    " block AS ("
    "  UPDATE bitmap_block SET bits = set_bit(bits, :bit, 0), free = free + get_bit(bits, :bit) FROM gone"
    "  WHERE bitmap_block.range_id = gone.range_id AND band = :band AND block_no = :block_no"
    "  RETURNING bitmap_block.range_id),"
    " counted AS ("
    "  UPDATE ip_range SET allocated = allocated - 1 FROM block"
    "  WHERE ip_range.id = block.range_id RETURNING ip_range.id),"
    f" head AS ({bump_head(1, after='counted')})"
    " INSERT INTO event (revision, type, payload)"
    f" SELECT head.revision, 'RELEASED',"
    f" {event_json('RELEASED', 'allocation', 'CAST(:document AS jsonb)', stamp=False)}"
    " FROM head, counted RETURNING revision"
)


@dataclass(frozen=True, slots=True)
class Held:
    """An allocation with where it lives in the store."""

    allocation: Allocation
    range_id: int
    network: netaddr.IPNetwork


def _held(row: Row[Any]) -> Held:
    allocation = Allocation(
        ip=netaddr.IPAddress(str(row.ip)),
        family=Family(row.family),
        range=row.range,
        owner=row.owner,
        metadata=row.metadata,
        created_at=row.created_at,
        revision=row.revision,
    )
    return Held(allocation, row.range_id, netaddr.IPNetwork(str(row.cidr)))


async def by_ip(
    connection: AsyncConnection, ip: netaddr.IPAddress, *, lock: bool = False
) -> Held | None:
    """Return the allocation of ``ip`` (row-locked with ``lock``), or None."""
    query = _BY_IP_LOCKED if lock else _BY_IP
    row = (await connection.execute(query, {"ip": str(ip)})).first()
    return _held(row) if row else None


async def by_owner(connection: AsyncConnection, owner: str, family: Family) -> Held | None:
    """Return the allocation ``owner`` holds in ``family``, or None."""
    row = (await connection.execute(_BY_OWNER, {"owner": owner, "family": str(family)})).first()
    return _held(row) if row else None


async def of_owner_locked(connection: AsyncConnection, owner: str) -> list[Held]:
    """Return every allocation of ``owner``, row-locked, in address order."""
    return [_held(row) for row in await connection.execute(_OF_OWNER_LOCKED, {"owner": owner})]


async def page(
    connection: AsyncConnection,
    *,
    range_id: int | None,
    owner: str | None,
    family: Family | None,
    after: netaddr.IPAddress | None,
    limit: int,
) -> list[Allocation]:
    """Return up to ``limit`` allocations matching the filters, in address order, after ``after``."""
    conditions = ["TRUE"]
    params: dict[str, Any] = {"limit": limit}
    if range_id is not None:
        conditions.append("a.range_id = :range_id")
        params["range_id"] = range_id
    if owner is not None:
        conditions.append("a.owner = :owner")
        params["owner"] = owner
    if family is not None:
        conditions.append("a.family = :family")
        params["family"] = str(family)
    if after is not None:
        conditions.append("a.ip > CAST(:after AS inet)")
        params["after"] = str(after)
    query = text(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE {' AND '.join(conditions)} ORDER BY a.ip LIMIT :limit"
    )
    return [_held(row).allocation for row in await connection.execute(query, params)]


async def record_allocation(
    connection: AsyncConnection,
    *,
    range_id: int,
    band: BandKind,
    block_no: int,
    bits: bytes,
    draft: Allocation,
) -> int:
    """Store ``draft`` (its revision is ignored) with ``bits`` as its block's new content.

    Returns the revision. Raises IntegrityError when the owner already holds an address of the
    family, or (should the bitmap ever disagree with the rows) when the address is held.
    """
    # One write statement for one allocation and for a batch: the invariant lives in one place.
    change = BlockChange(range_id, band, block_no, bits, 1)
    return await record_allocations(connection, [change], [(range_id, draft)])


async def by_owners(
    connection: AsyncConnection, keys: Sequence[tuple[str, Family]]
) -> dict[tuple[str, Family], Held]:
    """Return the allocations held by any of the ``(owner, family)`` pairs, by pair."""
    rows = await connection.execute(
        _BY_OWNERS,
        {"owners": [owner for owner, _ in keys], "families": [str(f) for _, f in keys]},
    )
    return {(h.allocation.owner, h.allocation.family): h for h in map(_held, rows)}


@dataclass(frozen=True, slots=True)
class BlockChange:
    """A locked block's new bits and how many of them were set since it was read."""

    range_id: int
    band: BandKind
    block_no: int
    bits: bytes
    taken: int


async def record_allocations(
    connection: AsyncConnection,
    blocks: Sequence[BlockChange],
    drafts: Sequence[tuple[int, Allocation]],
) -> int:
    """Store the ``(range_id, draft)`` allocations (their revisions are ignored) and the blocks'
    new bits in one statement; return the revision of the last one.

    The drafts take consecutive revisions in their order, ending at the returned one. Raises
    IntegrityError when an owner already holds an address of the family (a concurrent
    transaction got there first): nothing of the batch is then stored.
    """
    result = await connection.execute(
        _record_allocations(len(drafts)),
        {
            "block_ranges": [b.range_id for b in blocks],
            "block_bands": [int(b.band) for b in blocks],
            "block_nos": [b.block_no for b in blocks],
            "block_bits": [b.bits for b in blocks],
            "block_taken": [b.taken for b in blocks],
            "range_ids": [range_id for range_id, _ in drafts],
            "ips": [str(d.ip) for _, d in drafts],
            "families": [str(d.family) for _, d in drafts],
            "owners": [d.owner for _, d in drafts],
            "metadata": [orjson.dumps(d.metadata).decode() for _, d in drafts],
            "created_at": [d.created_at for _, d in drafts],
            "documents": [orjson.dumps(d.document()).decode() for _, d in drafts],
        },
    )
    return int(max(result.scalars()))


async def record_release(
    connection: AsyncConnection, held: Held, *, band: BandKind, block_no: int, bit: int
) -> int:
    """Delete the allocation row, clear its bit, decrement the count; return the revision."""
    result = await connection.execute(
        _RECORD_RELEASE,
        {
            "ip": str(held.allocation.ip),
            "band": int(band),
            "block_no": block_no,
            "bit": bit,
            "document": orjson.dumps(held.allocation.document()).decode(),
        },
    )
    return int(result.scalar_one())
