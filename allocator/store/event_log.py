"""The event log: dense revisions in commit order, in epochs that name its history.

Every writing transaction ends with one statement that bumps the single ``log_head`` row and
inserts its events numbered from the new head. The row lock taken by that bump is held until
commit, and Postgres makes a commit visible before it releases its locks, so revisions are
dense, follow commit order, and a rolled-back transaction leaves no hole. The lock is taken last,
so everything before it (block choice, bit setting) still runs in parallel.

A failover to a standby that lacks the newest commits takes the head back, and the new primary
hands those revisions out again for other changes. The first bump on a new Postgres timeline
therefore starts a new epoch (a trigger of migration 0003), recording its first revision:

    epoch 1-6f1c…   revisions 1 .. 95 | 96 .. 100 (lost with the old primary)
    epoch 2-0b9e…                     | 96 .. (other changes)

A reader at revision R of epoch E is still in the history when no later epoch began at or
before R.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

CHANNEL = "allocator_events"
"""The LISTEN/NOTIFY channel of the tailers: a wake-up hint carrying the new head revision."""


def bump_head(count: int, after: str | None = None) -> str:
    """Return the head bump as a CTE body, run after the CTE named ``after`` when given.

    Joining ``after`` forces the order: its row locks (block, range) are taken before the head's,
    the order every writer uses, so writers never deadlock on one another.

    The same statement queues a notification on ``CHANNEL`` (delivered at commit, dropped on
    rollback), so waking the tailers costs no extra round trip. It is only a hint: tailers also
    poll, so a lost notification delays nothing by more than their poll interval.
    """
    source = f" FROM {after}" if after else ""
    return (
        f"UPDATE log_head SET revision = log_head.revision + {count}{source}"
        " WHERE log_head.id = 1 RETURNING log_head.revision,"
        f" pg_notify('{CHANNEL}', CAST(log_head.revision AS text)) AS notified"
    )


def event_json(event_type: str, key: str, document: str, stamp: bool) -> str:
    """Return the SQL expression of an event object for a statement whose CTE ``head`` ran.

    ``document`` is the SQL expression (a jsonb) of the range or allocation the event carries;
    with ``stamp`` its ``revision`` member is set to the event's own revision (for objects
    created by the event).
    """
    body = f"{document} || jsonb_build_object('revision', head.revision)" if stamp else document
    return f"json_build_object('type', '{event_type}', 'revision', head.revision, '{key}', {body})"


_HEAD = text("SELECT revision FROM log_head WHERE id = 1")


async def head_revision(connection: AsyncConnection) -> int:
    """Return the revision of the newest committed change visible to this transaction."""
    return int((await connection.execute(_HEAD)).scalar_one())


EPOCH_FORM = re.compile(r"[0-9]{1,10}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""An epoch's name: the Postgres timeline and a random id (``2-0b9e…``); clients treat it as opaque."""


def epoch_name(timeline: int, epoch: uuid.UUID) -> str:
    return f"{timeline}-{epoch}"


@dataclass(frozen=True, slots=True)
class Bounds:
    """What the log holds: revisions ``compacted + 1 .. head``, the newest of them in ``epoch``."""

    head: int
    compacted: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Epoch:
    """One epoch of the log's history: its revisions begin at ``first_revision``."""

    name: str
    first_revision: int


_EPOCHS_SQL = "SELECT timeline, epoch, first_revision FROM log_epoch ORDER BY first_revision"
_EPOCHS = text(_EPOCHS_SQL)


async def history(connection: AsyncConnection) -> list[Epoch]:
    """Return the epochs of the log's history, oldest first (a handful over a lifetime)."""
    return _epochs((await connection.execute(_EPOCHS)).mappings().all())


def _epochs(rows: Sequence[Any]) -> list[Epoch]:
    return [Epoch(epoch_name(row["timeline"], row["epoch"]), row["first_revision"]) for row in rows]


def shared_until(epochs: list[Epoch], epoch: str) -> int | None:
    """Return the newest revision that ``epoch`` has in common with the history ``epochs``
    describes (the one before the next epoch began; 2^63 - 1 for the current epoch), or None when
    ``epoch`` is not part of that history (it was lost in a failover, or the log was reset)."""
    names = [one.name for one in epochs]
    if epoch not in names:
        return None
    later = names.index(epoch) + 1
    return epochs[later].first_revision - 1 if later < len(epochs) else 2**63 - 1


@dataclass(frozen=True, slots=True)
class LogRow:
    """One event as stored: its revision and the Event object as JSON text."""

    revision: int
    payload: str


# One statement, so one snapshot: the bounds and the rows agree. The rows visible to any snapshot
# are exactly the revisions up to the head it sees (see the module docstring), so reading
# ``revision > after`` in order never skips an event that commits later.
_READ_AFTER_SQL = """
    SELECT h.revision AS head, h.compacted, ep.timeline, h.epoch, e.revision, e.payload
    FROM log_head h
    JOIN log_epoch ep ON ep.epoch = h.epoch
    LEFT JOIN LATERAL (
        SELECT revision, CAST(payload AS text) AS payload
        FROM event
        WHERE revision > {after}
        ORDER BY revision
        LIMIT {limit}
    ) e ON TRUE
    WHERE h.id = 1
    ORDER BY e.revision
"""
_READ_AFTER = text(_READ_AFTER_SQL.format(after=":after", limit=":limit"))
_TAIL = _READ_AFTER_SQL.format(after="$1", limit="$2")


def _bounds_and_rows(result: Sequence[Any]) -> tuple[Bounds, list[LogRow]]:
    first = result[0]
    bounds = Bounds(
        first["head"], first["compacted"], epoch_name(first["timeline"], first["epoch"])
    )
    rows = [
        LogRow(row["revision"], row["payload"]) for row in result if row["revision"] is not None
    ]
    return bounds, rows


async def read_after(
    connection: AsyncConnection, after: int, limit: int
) -> tuple[Bounds, list[LogRow]]:
    """Return the log's bounds and up to ``limit`` events with revision > ``after``, in order.

    When ``after`` is below ``compacted`` the rows do not start at ``after + 1``: callers check
    the bounds first.
    """
    result = (await connection.execute(_READ_AFTER, {"after": after, "limit": limit})).mappings()
    return _bounds_and_rows(result.all())


async def tail(connection: Any, after: int, limit: int) -> tuple[Bounds, list[LogRow]]:
    """``read_after`` as one statement on an asyncpg connection outside any transaction (no
    BEGIN or COMMIT to wait for): the read a tailer makes after every commit."""
    return _bounds_and_rows(await connection.fetch(_TAIL, after, limit))


async def tail_history(connection: Any) -> list[Epoch]:
    """``history`` on an asyncpg connection."""
    return _epochs(await connection.fetch(_EPOCHS_SQL))


_OLDEST = text(
    "SELECT h.revision AS head, h.compacted, e.revision, e.created_at"
    " FROM log_head h LEFT JOIN LATERAL ("
    "  SELECT revision, created_at FROM event WHERE revision > h.compacted"
    "  ORDER BY revision LIMIT :limit) e ON TRUE"
    " WHERE h.id = 1 ORDER BY e.revision"
)
_DELETE_UPTO = text("DELETE FROM event WHERE revision > :after AND revision <= :upto")
# Last statement of the compaction transaction: the head row is locked only until commit, the
# same short moment a writer holds it.
_MARK_COMPACTED = text("UPDATE log_head SET compacted = GREATEST(compacted, :upto) WHERE id = 1")
# Advisory lock keys of the schema: 7245110 migrations, 7245111 the write function's batch lock,
# (7245112, range id) a range's changes; compaction has its own, so patient batches never wait for it.
_COMPACTION_LOCK = text("SELECT pg_try_advisory_xact_lock(7245113)")


async def compact(
    connection: AsyncConnection, *, keep_count: int, older_than: datetime, batch: int
) -> int:
    """Delete up to ``batch`` of the oldest events that are beyond the newest ``keep_count`` or
    were written before ``older_than``; return how many were deleted.

    Only a prefix of the log is deleted, and ``log_head.compacted`` is moved in the same
    transaction, so readers see either both or neither: every revision <= ``compacted`` is gone,
    every later one is there. An advisory lock keeps replicas from compacting at the same time;
    returns 0 when another one is at it right now.
    """
    if not (await connection.execute(_COMPACTION_LOCK)).scalar_one():
        return 0
    rows = (await connection.execute(_OLDEST, {"limit": batch})).all()
    head, compacted = int(rows[0].head), int(rows[0].compacted)
    upto = compacted
    for row in rows:
        if row.revision is None or (
            row.revision > head - keep_count and row.created_at >= older_than
        ):
            break
        upto = row.revision
    if upto == compacted:
        return 0
    await connection.execute(_DELETE_UPTO, {"after": compacted, "upto": upto})
    await connection.execute(_MARK_COMPACTED, {"upto": upto})
    return upto - compacted
