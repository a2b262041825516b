"""``allocator verify [--repair]``: check (and repair) the store's consistency, directly in the
database, while the service keeps serving."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from allocator.cli.database import database, require_schema
from allocator.cli.output import (
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    Format,
    OutputOption,
    emit,
    fail,
    stderr,
)
from allocator.domain.errors import Unavailable
from allocator.service.verify import Report
from allocator.service.verify import verify as verify_store
from allocator.settings import Settings
from allocator.store.database import create_engine

SHOWN = 20
"""Findings of each kind listed in the table (JSON and YAML list them all)."""


def verify(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Fix what can be fixed safely: bits follow the allocations, counts the bits.",
        ),
    ] = False,
    output: OutputOption = Format.TABLE,
) -> None:
    """Check that every set bit has exactly one allocation and every allocation its bit, that
    counts match the bits, that allocations lie in their ranges and that the event log is dense.

    Reads ALLOCATOR_DATABASE_URL (or the embedded database). Exits 1 while anything found
    remains wrong (with --repair: what could not be repaired), 0 when all is consistent.
    """
    settings = Settings()
    url, embedded = database(settings, create=False)
    console = stderr()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("blocks"),
        console=console,
        transient=True,
        disable=not console.is_terminal or output is not Format.TABLE,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(f"checking {name}", total=total)
            progress.update(tasks[name], completed=done)

        async def check() -> Report:
            engine = create_engine(url, settings)
            try:
                await require_schema(engine, settings)
                return await verify_store(engine, repair=repair, progress=advance)
            finally:
                await engine.dispose()

        try:
            report = asyncio.run(check())
        except Unavailable as exc:
            fail(f"cannot reach the database: {exc.detail}", EXIT_UNREACHABLE)
    del embedded
    emit(report.document(), output, lambda: report_view(report))
    if report.unresolved:
        raise typer.Exit(EXIT_REFUSED)


def report_view(report: Report) -> RenderableType:
    checked = Text(
        f"checked {report.ranges} ranges, {report.blocks} blocks, {report.allocations} "
        f"allocations at revision {report.revision}"
    )
    counts = Table(box=None, header_style="bold", pad_edge=False)
    counts.add_column("FINDING")
    counts.add_column("COUNT", justify="right")
    for kind, n in report.counts().items():
        counts.add_row(kind, Text(str(n), style="red" if n else "green"))
    parts: list[RenderableType] = [checked, Text(), counts]
    if report.findings:
        details = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("KIND", "RANGE", "DETAIL"):
            details.add_column(column)
        if report.repaired:
            details.add_column("OUTCOME")
        shown: dict[str, int] = {}
        for finding in report.findings:
            shown[finding.kind] = shown.get(finding.kind, 0) + 1
            if shown[finding.kind] > SHOWN:
                continue
            row = [str(finding.kind), finding.range or "-", finding.detail]
            details.add_row(*row, *([str(finding.outcome)] if report.repaired else []))
        parts += [Text(), details]
        hidden = sum(max(0, n - SHOWN) for n in shown.values())
        if hidden:
            parts.append(Text(f"... and {hidden} more (-o json lists them all)"))
    if not report.findings:
        verdict = Text("consistent", style="bold green")
    elif report.unresolved:
        left = len(report.unresolved)
        verdict = Text(
            f"{left} finding(s) remain"
            + ("" if report.repaired else "; --repair fixes what it can"),
            style="bold red",
        )
    else:
        verdict = Text("every finding repaired", style="bold green")
    return Group(*parts, Text(), verdict)
