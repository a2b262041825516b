"""``allocator verify``: prove that the bitmap, the counts, the allocation rows and the log agree,
and repair what can be repaired safely while the service keeps serving.

Modeled on the Kubernetes repair controller. The check reads everything inside one REPEATABLE
READ snapshot, range by range, merging each range's blocks and allocation rows in address order
(so memory holds one page of each, whatever the range's size). Findings:

    leak          a set bit without an allocation row, nor a cooling record (the address can
                  never be handed out); a cooling address's bit is set and is no leak. A set bit
                  of a block the range's geometry has not (after a resize) is one too
    missing-bit   an allocation row whose bit is clear (the address could be handed out twice)
    cooling-missing-bit
                  a cooling record whose bit is clear (the address could be handed out while
                  it cools down)
    count-drift   a block's free count or a range's allocated count that does not match its bits
    out-of-range  an allocation row outside its range's usable addresses (network, broadcast,
                  or another CIDR)
    log-gap       revisions between ``log_head.compacted + 1`` and the head with no event

The allocation rows are the truth: a repair makes the bits follow the rows and the counts follow
the bits. Each repair is a short transaction that takes the locks an allocation takes (the range's
shared lock, the block, then the range's count row; an allocation row before the log head, as a
release does) and checks again under them before it writes, so a finding that a concurrent
allocation or release resolved, or that a resize since the check made moot, is left alone
(reported ``gone``). A removed out-of-range row is a RELEASED event, appended through
the same head bump as every change. A log gap cannot be repaired: the events are lost.
"""

from __future__ import annotations

from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.service.unit_of_work import run
from allocator.service.verify.check import Progress, check
from allocator.service.verify.repair import repair as repair_findings
from allocator.service.verify.report import Finding, Kind, Report, Resolution

__all__ = ["Finding", "Kind", "Progress", "Report", "Resolution", "verify"]


async def verify(
    engine: AsyncEngine, *, repair: bool = False, progress: Progress | None = None
) -> Report:
    """Check the whole store in one snapshot; with ``repair``, then fix what can be fixed.

    Returns the report; its findings carry their resolution. Raises Unavailable when the database
    cannot serve.
    """
    report = await run(engine, partial(check, progress=progress), read_only=True)
    if repair:
        await repair_findings(engine, report)
    return report
