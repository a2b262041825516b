"""The check: every range's blocks and allocation rows merged in address order, and the log's
revisions, all in one snapshot (memory holds one page of each, whatever a range's size)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import netaddr
from sqlalchemy.ext.asyncio import AsyncConnection

from allocator.domain.band import BandKind
from allocator.domain.bitmap import set_bits
from allocator.domain.errors import IPNotInRange
from allocator.domain.model import Range
from allocator.service.verify.report import Finding, Kind, Report
from allocator.store import consistency, ranges
from allocator.store.event_log import head_revision

BLOCK_PAGE = 256
ROW_PAGE = 5000
GAP_LIMIT = 1000

Progress = Callable[[str, int, int], None]
"""Called as ``(range name, blocks checked, blocks in the range)`` while a range is checked."""


async def check(connection: AsyncConnection, progress: Progress | None = None) -> Report:
    """Return the findings of the whole store, read on ``connection`` (one snapshot)."""
    report = Report(revision=await head_revision(connection))
    for stored in await ranges.list_all(connection):
        await _check_range(connection, stored, report, progress)
    await _check_log(connection, report)
    return report


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
            past = (
                f"past the block's {size} addresses"
                if size
                else f"outside the geometry of {geometry.cidr} (no such block)"
            )
            finding(
                Kind.LEAK,
                f"bit {bit} of {block.band.name.lower()} block {block.block_no} is set but lies "
                + past,
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
