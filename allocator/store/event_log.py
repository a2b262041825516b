"""The event log: dense revisions in commit order.

Every writing transaction ends with one statement that bumps the single ``log_head`` row and
inserts its events numbered from the new head. The row lock taken by that bump is held until
commit, and Postgres makes a commit visible before it releases its locks, so revisions are
dense, follow commit order, and a rolled-back transaction leaves no hole. The lock is taken last,
so everything before it (block choice, bit setting) still runs in parallel.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


def bump_head(count: int, after: str | None = None) -> str:
    """Return the head bump as a CTE body, run after the CTE named ``after`` when given.

    Joining ``after`` forces the order: its row locks (block, range) are taken before the head's,
    the order every writer uses, so writers never deadlock on one another.
    """
    source = f" FROM {after}" if after else ""
    return (
        f"UPDATE log_head SET revision = log_head.revision + {count}{source}"
        " WHERE log_head.id = 1 RETURNING log_head.revision"
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
