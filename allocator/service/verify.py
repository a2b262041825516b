"""``allocator verify``: prove that the bitmap, the counts, the allocation rows and the log agree,
and repair what can be repaired safely while the service keeps serving.

Modeled on the Kubernetes repair controller. The check reads everything inside one REPEATABLE
READ snapshot, range by range, merging each range's blocks and allocation rows in address order
(so memory holds one page of each, whatever the range's size). Findings:

    leak          a set bit without an allocation row, nor a cooling record (the address can
                  never be handed out); a cooling address's bit is set and is no leak
    missing-bit   an allocation row whose bit is clear (the address could be handed out twice)
    cooling-missing-bit
                  a cooling record whose bit is clear (the address could be handed out while
                  it cools down)
    count-drift   a block's free count or a range's allocated count that does not match its bits
    out-of-range  an allocation row outside its range's usable addresses (network, broadcast,
                  or another CIDR)
    log-gap       revisions between ``log_head.compacted + 1`` and the head with no event

The allocation rows are the truth: a repair makes the bits follow the rows and the counts follow
the bits. Each repair is a short transaction that takes the locks an allocation takes (the block,
then the range's count row; an allocation row before the log head, as a release does) and checks
again under them before it writes, so a finding that a concurrent allocation or release resolved
is left alone (reported ``gone``). A removed out-of-range row is a RELEASED event, appended through
the same head bump as every change. A log gap cannot be repaired: the events are lost.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import netaddr
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from allocator.domain.address import parse_address
from allocator.domain.band import BandKind
from allocator.domain.bitmap import is_set, set_bits, with_bit
from allocator.domain.errors import IPNotInRange
from allocator.domain.model import Range
from allocator.domain.range import ServiceRange
from allocator.service.unit_of_work import run
from allocator.store import allocations, bitmap, consistency, ranges
from allocator.store.event_log import head_revision

BLOCK_PAGE = 256
ROW_PAGE = 5000
GAP_LIMIT = 1000

Progress = Callable[[str, int, int], None]
"""Called as ``(range name, blocks checked, blocks in the range)`` while a range is checked."""


class Kind(enum.StrEnum):
    LEAK = "leak"
    MISSING_BIT = "missing-bit"
    COOLING_MISSING_BIT = "cooling-missing-bit"
    COUNT_DRIFT = "count-drift"
    OUT_OF_RANGE = "out-of-range"
    LOG_GAP = "log-gap"


class Outcome(enum.StrEnum):
    FOUND = "found"
    REPAIRED = "repaired"
    GONE = "gone"
    """No longer true when checked again under the lock (a concurrent change resolved it)."""
    KEPT = "kept"
    """Cannot be repaired safely."""


@dataclass(slots=True)
class Finding:
    """One inconsistency, where it is, and (after a repair) what became of it."""

    kind: Kind
    detail: str
    range: str | None = None
    ip: str | None = None
    outcome: Outcome = Outcome.FOUND
    range_id: int | None = None
    band: BandKind | None = None
    block_no: int | None = None
    bit: int | None = None

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = {"kind": str(self.kind), "detail": self.detail}
        if self.range is not None:
            document["range"] = self.range
        if self.ip is not None:
            document["ip"] = self.ip
        if self.band is not None:
            document["block"] = {"band": self.band.name.lower(), "block_no": self.block_no}
        document["outcome"] = str(self.outcome)
        return document


@dataclass(slots=True)
class Report:
    """What was checked (at which revision), what was found, and what the repair did."""

    revision: int = 0
    ranges: int = 0
    blocks: int = 0
    allocations: int = 0
    findings: list[Finding] = field(default_factory=list)
    repaired: bool = False
    geometry: dict[int, ServiceRange] = field(default_factory=dict)

    @property
    def consistent(self) -> bool:
        return not self.findings

    @property
    def unresolved(self) -> list[Finding]:
        """The findings still true after the repair (all of them when none was attempted)."""
        return [f for f in self.findings if f.outcome not in (Outcome.REPAIRED, Outcome.GONE)]

    def counts(self) -> dict[str, int]:
        """Return how many findings of each kind, every kind listed."""
        counts = dict.fromkeys((str(k) for k in Kind), 0)
        for finding in self.findings:
            counts[str(finding.kind)] += 1
        return counts

    def document(self) -> dict[str, Any]:
        return {
            "consistent": self.consistent,
            "revision": self.revision,
            "checked": {
                "ranges": self.ranges,
                "blocks": self.blocks,
                "allocations": self.allocations,
            },
            "counts": self.counts(),
            "repair": self.repaired,
            "repaired": sum(1 for f in self.findings if f.outcome is Outcome.REPAIRED),
            "unresolved": len(self.unresolved),
            "findings": [f.document() for f in self.findings],
        }


async def verify(
    engine: AsyncEngine, *, repair: bool = False, progress: Progress | None = None
) -> Report:
    """Check the whole store in one snapshot; with ``repair``, then fix what can be fixed.

    Returns the report; its findings carry their outcome. Raises Unavailable when the database
    cannot serve.
    """

    async def check(connection: AsyncConnection) -> Report:
        report = Report(revision=await head_revision(connection))
        for stored in await ranges.list_all(connection):
            await _check_range(connection, stored, report, progress)
        await _check_log(connection, report)
        return report

    report = await run(engine, check, read_only=True)
    if repair:
        await _repair(engine, report)
    return report


# -- the check ----------------------------------------------------------------------------------


async def _blocks(
    connection: AsyncConnection, range_id: int
) -> AsyncIterator[consistency.StoredBits]:
    after = (-1, -1)
    while page := await consistency.blocks_after(connection, range_id, after, BLOCK_PAGE):
        for block in page:
            yield block
        after = (int(page[-1].band), page[-1].block_no)


async def _addresses(connection: AsyncConnection, range_id: int) -> AsyncIterator[Any]:
    after = None
    while page := await consistency.addresses_after(connection, range_id, after, ROW_PAGE):
        for ip in page:
            yield ip
        after = str(page[-1])


async def _check_range(
    connection: AsyncConnection, stored: Range, report: Report, progress: Progress | None
) -> None:
    geometry = stored.geometry
    report.ranges += 1
    report.geometry[stored.id] = geometry
    total = await consistency.count_blocks(connection, stored.id)

    def finding(kind: Kind, detail: str, **where: Any) -> None:
        report.findings.append(
            Finding(kind, detail, range=stored.name, range_id=stored.id, **where)
        )

    def place(ip: Any) -> tuple[int, int, int] | None:
        """Return ``(band, block_no, bit)`` of an address, None when it is not usable here."""
        try:
            band, block_no, bit = geometry.locate(netaddr.IPAddress(int(ip), ip.version))
        except IPNotInRange:
            return None
        return int(band.kind), block_no, bit

    cooling: dict[tuple[int, int], set[int]] = defaultdict(set)
    for ip in await consistency.cooling(connection, stored.id):
        if (at := place(ip)) is not None:
            cooling[(at[0], at[1])].add(at[2])
    cooling_records = sum(len(bits) for bits in cooling.values())

    def cooling_missing(ip: str, band: BandKind, block_no: int, bit: int) -> None:
        finding(
            Kind.COOLING_MISSING_BIT,
            f"{ip} cools down but its bit is clear",
            ip=ip,
            band=band,
            block_no=block_no,
            bit=bit,
        )

    counted_static = 0
    rows = _addresses(connection, stored.id)
    row = await anext(rows, None)
    counted_bits = 0
    checked = 0

    async def held_before(key: tuple[int, int] | None) -> set[int]:
        """Consume the rows before block ``key`` (reporting those with no block) and return
        the bits of the rows inside it."""
        nonlocal row
        inside: set[int] = set()
        while row is not None:
            at = place(row)
            if at is None:
                finding(
                    Kind.OUT_OF_RANGE,
                    f"{row} is allocated in {stored.name} ({geometry.cidr}) but is not one of "
                    "its usable addresses",
                    ip=str(row),
                )
            elif key is not None and (at[0], at[1]) == key:
                inside.add(at[2])
            elif key is None or (at[0], at[1]) < key:
                band = BandKind(at[0])
                finding(
                    Kind.MISSING_BIT,
                    f"{row} is allocated but its block ({band.name.lower()} {at[1]}) does not exist",
                    ip=str(row),
                    band=band,
                    block_no=at[1],
                    bit=at[2],
                )
            else:
                break
            report.allocations += 1
            row = await anext(rows, None)
        return inside

    async for block in _blocks(connection, stored.id):
        key = (int(block.band), block.block_no)
        inside = await held_before(key)
        band = geometry.band(block.band)
        size = band.block_bits(block.block_no) if block.block_no < band.block_count else 0
        taken = set(set_bits(block.bits))
        valid = {bit for bit in taken if bit < size}
        where = {"band": block.band, "block_no": block.block_no}
        cooled = cooling.pop(key, set())
        for bit in sorted(cooled - valid):
            ip = str(geometry.address_at(band.offset(block.block_no, bit)))
            cooling_missing(ip, block.band, block.block_no, bit)
        for bit in sorted(valid - inside - cooled):
            ip = str(geometry.address_at(band.offset(block.block_no, bit)))
            finding(
                Kind.LEAK, f"{ip} is marked taken but has no allocation", ip=ip, bit=bit, **where
            )
        for bit in sorted(inside - valid):
            ip = str(geometry.address_at(band.offset(block.block_no, bit)))
            finding(
                Kind.MISSING_BIT, f"{ip} is allocated but its bit is clear", ip=ip, bit=bit, **where
            )
        for bit in sorted(taken - valid):
            finding(
                Kind.LEAK,
                f"bit {bit} of {block.band.name.lower()} block {block.block_no} is set but lies "
                f"past the block's {size} addresses",
                bit=bit,
                **where,
            )
        if block.free != size - len(valid):
            finding(
                Kind.COUNT_DRIFT,
                f"{block.band.name.lower()} block {block.block_no} counts {block.free} free, "
                f"its bits say {size - len(valid)}",
                **where,
            )
        counted_bits += len(valid - cooled)
        counted_static += len(valid - cooled) if block.band is BandKind.STATIC else 0
        checked += 1
        report.blocks += 1
        if progress is not None and (checked % 64 == 0 or checked == total):
            progress(stored.name, checked, total)
    await held_before(None)
    for (band_kind, block_no), bits in cooling.items():  # in blocks that do not exist
        band = geometry.band(BandKind(band_kind))
        for bit in sorted(bits):
            ip = str(geometry.address_at(band.offset(block_no, bit)))
            cooling_missing(ip, BandKind(band_kind), block_no, bit)
    if stored.cooling != cooling_records:
        finding(
            Kind.COUNT_DRIFT,
            f"range {stored.name} counts {stored.cooling} cooling, it has {cooling_records}"
            " cooling records",
        )
    if progress is not None:
        progress(stored.name, total, total)
    if stored.allocated != counted_bits:
        finding(
            Kind.COUNT_DRIFT,
            f"range {stored.name} counts {stored.allocated} allocated, its bits say {counted_bits}",
        )
    if stored.static_allocated != counted_static:
        finding(
            Kind.COUNT_DRIFT,
            f"range {stored.name} counts {stored.static_allocated} allocated in its static band, "
            f"its bits say {counted_static}",
        )


async def _check_log(connection: AsyncConnection, report: Report) -> None:
    gaps, beyond = await consistency.log_gaps(connection, GAP_LIMIT)
    for gap in gaps:
        span = str(gap.first) if gap.first == gap.last else f"{gap.first}..{gap.last}"
        report.findings.append(Finding(Kind.LOG_GAP, f"the log has no event for revision {span}"))
    if beyond:
        report.findings.append(
            Finding(Kind.LOG_GAP, f"{beyond} events lie beyond the head revision")
        )


# -- the repair ---------------------------------------------------------------------------------


async def _repair(engine: AsyncEngine, report: Report) -> None:
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
            finding.outcome = Outcome.KEPT
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
    """Make one block's bits follow the rows and its free count follow its bits, under its lock."""
    band = geometry.band(kind)
    if not 0 <= block_no < band.block_count:  # a block no band has: nothing safe to do
        for finding in group:
            finding.outcome = Outcome.KEPT
        return
    size = band.block_bits(block_no)
    bits = (await bitmap.lock_block(connection, range_id, band, block_no, eager=False)).bits
    free = await consistency.block_free(connection, range_id, kind, block_no)
    # The rows, read now: under the block lock no allocation of this block can be in flight.
    wanted = [f.ip for f in group if f.ip is not None]
    rows = {
        str(ipaddress.ip_address(ip)) for ip in await consistency.held(connection, range_id, wanted)
    }
    original = bits
    for finding in group:
        if finding.bit is None:
            continue
        taken = is_set(bits, finding.bit)
        if finding.kind is Kind.LEAK and taken and (finding.ip is None or finding.ip not in rows):
            bits = with_bit(bits, finding.bit, False)
            finding.outcome = Outcome.REPAIRED
        elif (
            finding.kind in (Kind.MISSING_BIT, Kind.COOLING_MISSING_BIT)
            and not taken
            and finding.ip in rows
        ):
            bits = with_bit(bits, finding.bit, True)
            finding.outcome = Outcome.REPAIRED
        else:
            finding.outcome = Outcome.GONE
    # Bits past the block's end never count; clear any left, whoever set them.
    for bit in set_bits(bits):
        if bit >= size:
            bits = with_bit(bits, bit, False)
    expected = size - len(set_bits(bits))
    for finding in group:
        if finding.kind is Kind.COUNT_DRIFT:
            finding.outcome = Outcome.REPAIRED if free != expected else Outcome.GONE
    if bits != original or free != expected:
        await consistency.write_block(connection, range_id, kind, block_no, bits, expected)


async def _remove_stray(connection: AsyncConnection, *, finding: Finding) -> None:
    """Delete an out-of-range allocation row (a RELEASED event), if it is still one."""
    assert finding.ip is not None
    held = await allocations.by_ip(connection, parse_address(finding.ip), lock=True)
    if held is None or held.range_id != finding.range_id:
        finding.outcome = Outcome.GONE
        return
    try:
        ServiceRange.of(held.network, check_limits=False).locate(held.allocation.ip)
    except IPNotInRange:
        pass  # still stray: remove it
    else:
        finding.outcome = Outcome.GONE
        return
    revision = await consistency.remove(connection, held)
    finding.outcome = Outcome.REPAIRED
    finding.detail += f"; released at revision {revision}"


async def _recount(connection: AsyncConnection, *, range_id: int, group: list[Finding]) -> None:
    """Set a range's counts to its rows, under the count row's lock."""
    allocated = await consistency.lock_count(connection, range_id)
    if allocated is None:
        for finding in group:
            finding.outcome = Outcome.GONE
        return
    rows = await consistency.count_rows(connection, range_id)
    if rows != allocated:
        await consistency.set_count(connection, range_id, rows)
    for finding in group:
        finding.outcome = Outcome.REPAIRED if rows != allocated else Outcome.GONE
