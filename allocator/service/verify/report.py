"""What ``verify`` found: each finding's kind, place and resolution, and the report of a run."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from allocator.domain.band import BandKind
from allocator.domain.range import ServiceRange


class Kind(enum.StrEnum):
    LEAK = "leak"
    MISSING_BIT = "missing-bit"
    COOLING_MISSING_BIT = "cooling-missing-bit"
    COUNT_DRIFT = "count-drift"
    OUT_OF_RANGE = "out-of-range"
    LOG_GAP = "log-gap"


class Resolution(enum.StrEnum):
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
    outcome: Resolution = Resolution.FOUND
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
        return [f for f in self.findings if f.outcome not in (Resolution.REPAIRED, Resolution.GONE)]

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
            "repaired": sum(1 for f in self.findings if f.outcome is Resolution.REPAIRED),
            "unresolved": len(self.unresolved),
            "findings": [f.document() for f in self.findings],
        }
