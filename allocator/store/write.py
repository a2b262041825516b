"""The write statement: a group of allocations and releases in one call of ``allocator_write``.

The function (installed by migration 0002, its SQL in ``migrations/versions``) runs as the
statement's own transaction: one round trip takes the addresses, changes the bits, rows and
counts, appends the events and bumps the head. Refusals come back as outcomes, one per operation,
in the order given. A batch (``write_batch``) is such a call whose operations are one client's
requests: they never run again apart, and an atomic one with a refusal fails as a whole.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

_WRITE = """
SELECT status, problem, detail, extension, revision, body
FROM allocator_write($1::text[], $2::text[], $3::text[]::inet[], $4::text[], $5::text[],
                     $6::text[]::jsonb[], $7::text, $8::boolean)
"""

BATCH_REFUSED = "ALB01"
"""The SQLSTATE of an atomic batch that was refused; the refusals are in the error's detail."""

HEAD = -1
"""The status of the row a batch's call ends with: its revision is the head after the call."""


class Kind(enum.StrEnum):
    ALLOCATE = "allocate"
    RELEASE = "release"
    RELEASE_OWNER = "release_owner"


@dataclass(frozen=True, slots=True)
class Operation:
    """One write: an allocation (dynamic when ``ip`` is None), a release of ``ip`` (guarded by
    ``owner`` when given), or a release of everything ``owner`` holds."""

    kind: Kind
    owner: str | None
    ip: str | None = None
    range: str | None = None
    family: str | None = None
    metadata: str | None = None
    """The metadata object as JSON text."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one operation got: ``status`` as the HTTP contract answers it alone (0: it must wait
    for a block, run it again alone); a refusal's ``problem`` type, ``detail`` and ``extension``
    (JSON text); the ``revision`` of its first event; the allocation as JSON text (for a release
    of an owner's, a JSON array of them)."""

    status: int
    problem: str | None
    detail: str | None
    extension: str | None
    revision: int | None
    body: str | None

    @property
    def deferred(self) -> bool:
        return self.status == 0


class BatchRefused(Exception):
    """An atomic batch with refused requests: nothing of it was stored. ``refusals`` are the
    outcomes of those requests, by their index in the batch."""

    def __init__(self, refusals: list[tuple[int, Outcome]]) -> None:
        super().__init__(f"{len(refusals)} requests of the batch were refused")
        self.refusals = refusals


async def write(connection: Any, operations: Sequence[Operation]) -> list[Outcome]:
    """Apply ``operations`` in one call on an asyncpg connection outside any transaction; return
    their outcomes in order. Raises asyncpg's errors when the call fails as a whole (nothing of
    it is then stored)."""
    return await _fetch(connection, operations, None, False)


async def write_batch(
    connection: Any, operations: Sequence[Operation], *, atomic: bool, patient: bool
) -> tuple[list[Outcome], int]:
    """Apply ``operations`` as one batch; return their outcomes in order (none deferred) and the
    head revision after it.

    Not ``patient``, a batch that would have to wait for a block fails at once as a lost race
    (40001); ``patient``, it waits, after the batches that wait before it. Raises BatchRefused
    (atomic only: then nothing was stored) and asyncpg's errors, as ``write``."""
    try:
        *outcomes, head = await _fetch(
            connection, operations, "atomic" if atomic else "each", patient
        )
    except asyncpg.PostgresError as exc:
        if exc.sqlstate != BATCH_REFUSED:
            raise
        refusals = [
            (
                item["index"],
                Outcome(
                    item["status"],
                    item["problem"],
                    item["detail"],
                    orjson.dumps(item["extension"]).decode() if item["extension"] else None,
                    None,
                    None,
                ),
            )
            for item in orjson.loads(exc.detail)
        ]
        raise BatchRefused(refusals) from None
    assert head.status == HEAD
    assert head.revision is not None
    return outcomes, head.revision


async def _fetch(
    connection: Any, operations: Sequence[Operation], batch: str | None, patient: bool
) -> list[Outcome]:
    rows = await connection.fetch(
        _WRITE,
        [o.kind.value for o in operations],
        [o.owner for o in operations],
        [o.ip for o in operations],
        [o.range for o in operations],
        [o.family for o in operations],
        [o.metadata for o in operations],
        batch,
        patient,
    )
    return [Outcome(*row) for row in rows]
