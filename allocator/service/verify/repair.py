"""The repair: bits follow the allocation rows, counts follow the bits, each fix a short
transaction under the locks an allocation takes that checks its finding again before it writes."""

from __future__ import annotations

from collections import defaultdict
from functools import partial

import netaddr
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.domain.address import format_address, parse_address
from allocator.domain.band import BandKind
from allocator.domain.bitmap import is_set, set_bits, with_bit
from allocator.domain.errors import IPNotInRange
from allocator.domain.range import ServiceRange
from allocator.service.unit_of_work import run
from allocator.service.verify.report import Finding, Kind, Report, Resolution
from allocator.store import allocations, bitmap, consistency, ranges


async def repair(engine: AsyncEngine, report: Report) -> None:
    report.repaired = True
    by_block: dict[tuple[int, BandKind, int], list[Finding]] = defaultdict(list)
    recount: dict[int, list[Finding]] = defaultdict(list)
    for finding in report.findings:
        if (
            finding.range_id is not None
            and finding.band is not None
            and finding.block_no is not None
        ):
            by_block[(finding.range_id, finding.band, finding.block_no)].append(finding)
        elif finding.kind is Kind.COUNT_DRIFT and finding.range_id is not None:
            recount[finding.range_id].append(finding)
    for (range_id, band, block_no), group in by_block.items():
        fix_block = partial(
            _repair_block,
            geometry=report.geometry[range_id],
            range_id=range_id,
            kind=band,
            block_no=block_no,
            group=group,
        )
        await run(engine, fix_block)
        recount.setdefault(range_id, [])
    for finding in report.findings:
        if finding.kind is Kind.OUT_OF_RANGE:
            await run(engine, partial(_remove_stray, finding=finding))
            assert finding.range_id is not None
            recount.setdefault(finding.range_id, [])
        elif finding.kind is Kind.LOG_GAP:
            finding.outcome = Resolution.KEPT
    # Last, each touched range's count follows its rows (which the bits now match).
    for range_id, group in recount.items():
        await run(engine, partial(_recount, range_id=range_id, group=group))


async def _repair_block(
    connection: AsyncConnection,
    *,
    geometry: ServiceRange,
    range_id: int,
    kind: BandKind,
    block_no: int,
    group: list[Finding],
) -> None:
    """Make one block's bits follow the rows and its free count follow its bits, under its lock
    (and the range's shared lock: no resize meanwhile); drop a block the geometry has not."""
    if await ranges.shared_cidr(connection, range_id) != geometry.cidr:
        for finding in group:  # resized or deleted since the check: check again
            finding.outcome = Resolution.GONE
        return
    band = geometry.band(kind)
    if not 0 <= block_no < band.block_count:  # a block no band has: nothing can be in it
        await bitmap.drop_block(connection, range_id, kind, block_no)
        for finding in group:
            finding.outcome = Resolution.REPAIRED
        return
    size = band.block_bits(block_no)
    bits = (await bitmap.lock_block(connection, range_id, band, block_no, eager=False)).bits
    free = await consistency.block_free(connection, range_id, kind, block_no)
    # The rows, read now: under the block lock no allocation of this block can be in flight.
    wanted = [f.ip for f in group if f.ip is not None]
    rows = {
        format_address(netaddr.IPAddress(ip))
        for ip in await consistency.held(connection, range_id, wanted)
    }
    original = bits
    for finding in group:
        if finding.bit is None:
            continue
        taken = is_set(bits, finding.bit)
        if finding.kind is Kind.LEAK and taken and (finding.ip is None or finding.ip not in rows):
            bits = with_bit(bits, finding.bit, False)
            finding.outcome = Resolution.REPAIRED
        elif (
            finding.kind in (Kind.MISSING_BIT, Kind.COOLING_MISSING_BIT)
            and not taken
            and finding.ip in rows
        ):
            bits = with_bit(bits, finding.bit, True)
            finding.outcome = Resolution.REPAIRED
        else:
            finding.outcome = Resolution.GONE
    # Bits past the block's end never count; clear any left, whoever set them.
    for bit in set_bits(bits):
        if bit >= size:
            bits = with_bit(bits, bit, False)
    expected = size - len(set_bits(bits))
    for finding in group:
        if finding.kind is Kind.COUNT_DRIFT:
            finding.outcome = Resolution.REPAIRED if free != expected else Resolution.GONE
    if bits != original or free != expected:
        await consistency.write_block(connection, range_id, kind, block_no, bits, expected)


async def _remove_stray(connection: AsyncConnection, *, finding: Finding) -> None:
    """Delete an out-of-range allocation row (a RELEASED event), if it is still one."""
    assert finding.ip is not None
    held = await allocations.by_ip(connection, parse_address(finding.ip), lock=True)
    if held is None or held.range_id != finding.range_id:
        finding.outcome = Resolution.GONE
        return
    try:
        ServiceRange.of(held.network, check_limits=False).locate(held.allocation.ip)
    except IPNotInRange:
        pass  # still stray: remove it
    else:
        finding.outcome = Resolution.GONE
        return
    revision = await consistency.remove(connection, held)
    finding.outcome = Resolution.REPAIRED
    finding.detail += f"; released at revision {revision}"


async def _recount(connection: AsyncConnection, *, range_id: int, group: list[Finding]) -> None:
    """Set a range's counts to its rows, under the count row's lock."""
    allocated = await consistency.lock_count(connection, range_id)
    if allocated is None:
        for finding in group:
            finding.outcome = Resolution.GONE
        return
    rows = await consistency.count_rows(connection, range_id)
    if rows != allocated:
        await consistency.set_count(connection, range_id, rows)
    for finding in group:
        finding.outcome = Resolution.REPAIRED if rows != allocated else Resolution.GONE
