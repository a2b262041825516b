"""The contract's Range and Allocation objects as Postgres builds them: the API's reads.

Each read is one statement on an asyncpg connection outside any transaction: one round trip, and
one snapshot, so a page and the revision it names agree. The JSON comes from the same functions
(``range_json``, ``allocator_json``) that write the events, so a read and an event of the same
object are the same text.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

_ALLOCATION_JSON = (
    "allocator_json(ROW(a.ip, a.family, r.name, a.owner, a.metadata, a.created_at, a.revision,"
    " NULL)::allocator_held)"
)

_ALLOCATION = f"""
SELECT (SELECT {_ALLOCATION_JSON}
        FROM allocation a
        JOIN ip_range r ON r.id = a.range_id
        WHERE a.ip = $1::text::inet) AS allocation,
       allocator_time(c.available_at) AS available_at,
       c.released_by
FROM (SELECT 1) AS one
LEFT JOIN cooling_address c ON c.ip = $1::text::inet AND c.available_at > now()
"""

_RANGE = """
SELECT range_json(r)
FROM ip_range r
WHERE r.name = $1
"""

_RANGES = """
SELECT coalesce(json_agg(range_json(r) ORDER BY r.name), '[]')
FROM ip_range r
"""


@dataclass(frozen=True, slots=True)
class Held:
    """An address as a read finds it: the Allocation object as JSON, or when it is cooling down
    until when and who released it (all None: free)."""

    allocation: str | None
    available_at: str | None
    released_by: str | None


async def allocation(connection: Any, ip: str) -> Held:
    """Return what holds ``ip``: an allocation, a cool-down, or nothing."""
    return Held(*await connection.fetchrow(_ALLOCATION, ip))


async def range_(connection: Any, name: str) -> str | None:
    """Return the Range object named ``name`` as JSON, or None."""
    found: str | None = await connection.fetchval(_RANGE, name)
    return found


async def ranges(connection: Any) -> str:
    """Return every Range object, ordered by name, as a JSON array."""
    found: str = await connection.fetchval(_RANGES)
    return found


@dataclass(frozen=True, slots=True)
class Page:
    """A page of allocations: ``items`` a JSON array, the revision it was read at, the last
    address on it when more follow, and whether the range filtered on exists."""

    items: str
    revision: int
    last: str | None
    range_known: bool


FILTERS = ("range", "owner", "family", "after")


@functools.cache
def _page(filters: tuple[str, ...]) -> str:
    """The page statement for the filters given (one prepared statement each): ``$1`` is the
    limit, the filters' values follow in ``FILTERS`` order."""
    condition = {
        "range": "r.name = ${}",
        "owner": "a.owner = ${}",
        "family": "a.family = ${}",
        "after": "a.ip > ${}::text::inet",
    }
    where = [condition[name].format(n) for n, name in enumerate(filters, start=2)]
    known = (
        f"EXISTS (SELECT 1 FROM ip_range WHERE name = ${filters.index('range') + 2})"
        if "range" in filters
        else "true"
    )
    return f"""
SELECT h.revision,
       {known} AS range_known,
       coalesce(json_agg(p.doc ORDER BY p.ip) FILTER (WHERE p.n <= $1), '[]') AS items,
       host(max(p.ip) FILTER (WHERE p.n <= $1)) AS last,
       count(p.n) > $1 AS more
FROM log_head h
LEFT JOIN (
    SELECT a.ip, {_ALLOCATION_JSON} AS doc, row_number() OVER (ORDER BY a.ip) AS n
    FROM allocation a
    JOIN ip_range r ON r.id = a.range_id
    WHERE {" AND ".join(where) or "true"}
    ORDER BY a.ip
    LIMIT $1 + 1
) p ON true
WHERE h.id = 1
GROUP BY h.revision
"""


async def page(connection: Any, limit: int, **filters: str | None) -> Page:
    """Return up to ``limit`` allocations in address order matching the ``filters`` given
    (``range``, ``owner``, ``family``, ``after`` an address)."""
    given = tuple(name for name in FILTERS if filters.get(name) is not None)
    row = await connection.fetchrow(_page(given), limit, *(filters[name] for name in given))
    return Page(
        row["items"], row["revision"], row["last"] if row["more"] else None, row["range_known"]
    )


# One statement, so one snapshot: every range and allocation as its event of the list, and the
# log's bounds they are the state at.
_LISTING = f"""
SELECT h.revision AS head, h.compacted, ep.timeline, h.epoch,
       ARRAY(
           SELECT json_build_object('type', 'RANGE_ADDED', 'revision', h.revision,
                                    'range', range_json(r))::text
           FROM ip_range r ORDER BY r.name
       ) AS ranges,
       ARRAY(
           SELECT json_build_object('type', 'ALLOCATED', 'revision', h.revision,
                                    'allocation', {_ALLOCATION_JSON})::text
           FROM allocation a JOIN ip_range r ON r.id = a.range_id ORDER BY a.ip
       ) AS allocations
FROM log_head h
JOIN log_epoch ep ON ep.epoch = h.epoch
WHERE h.id = 1
"""


@dataclass(frozen=True, slots=True)
class Listing:
    """The events of a list (``initial=true``) as JSON text: a ``RANGE_ADDED`` per range by
    name, an ``ALLOCATED`` per allocation by address, all at revision ``head``."""

    head: int
    compacted: int
    timeline: int
    epoch: Any
    ranges: list[str]
    allocations: list[str]


async def listing(connection: Any) -> Listing:
    """Return the whole state and the log's bounds it is at (one statement: one snapshot)."""
    row = await connection.fetchrow(_LISTING)
    return Listing(
        row["head"], row["compacted"], row["timeline"], row["epoch"], row["ranges"],
        row["allocations"],
    )  # fmt: skip
