"""``allocator ranges``: list, show (with an occupancy map), create, resize, drain, resume and
delete ranges."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from allocator.cli.output import (
    Format,
    OutputOption,
    bar,
    count,
    emit,
    fill_style,
    percent,
    table,
)
from allocator.cli.remote import DEFAULT_SERVER, RemoteCommands, ServerOption, connected
from allocator.client.models import CellUsage, Occupancy, Range

app = RemoteCommands(help="Ranges: how they are used, and where.", no_args_is_help=True)

MAP_COLUMNS = 64
MAP_CELLS = 512
"""Slices of the range in the map of ``ranges show``: 8 rows of 64."""

Name = Annotated[str, typer.Argument(help="The range's name.")]


def ranges_table(items: list[Range]) -> Table:
    drawn = table(
        "NAME",
        "CIDR",
        "FAMILY",
        "SIZE>",
        "ALLOCATED>",
        "COOLING>",
        "FREE>",
        "USE>",
        "COOL-DOWN>",
        "",
        "STATE",
    )
    for r in items:
        drawn.add_row(
            r["name"],
            r["cidr"],
            r["family"],
            count(r["size"]),
            count(r["allocated"]),
            count(r["cooling"]),
            count(r["free"]),
            percent(r["allocated"], r["size"]),
            cooldown(r),
            bar(r["allocated"], r["size"]),
            state(r),
        )
    return drawn


def cooldown(r: Range) -> str:
    return f"{r['release_cooldown_seconds']}s" if r["release_cooldown_seconds"] else "-"


CooldownOption = Annotated[
    int,
    typer.Option(
        min=0,
        max=86400,
        help="Seconds a released address cools down before another owner may take it.",
    ),
]


def state(r: Range) -> Text:
    """``serving``, or ``drained`` (no new allocation) in yellow."""
    return Text("serving") if r["allocatable"] else Text("drained", style="yellow")


@app.command("list")
def list_ranges(server: ServerOption = DEFAULT_SERVER, output: OutputOption = Format.TABLE) -> None:
    """Every range: size, allocated, free and use, with a bar each."""
    with connected(server) as api:
        items = api.list_ranges()
    emit({"items": items}, output, lambda: ranges_table(items) if items else Text("no ranges"))


@app.command("show")
def show(
    name: Name, server: ServerOption = DEFAULT_SERVER, output: OutputOption = Format.TABLE
) -> None:
    """A range's counts, its static and dynamic bands, and a map of where addresses are taken
    (for a huge IPv6 range: of the blocks in use)."""
    with connected(server) as api:
        occupancy = api.get_occupancy(name, cells=MAP_CELLS)
    emit(occupancy, output, lambda: occupancy_view(occupancy))


@app.command("create")
def create(
    name: Name,
    cidr: Annotated[str, typer.Argument(help="e.g. 10.96.0.0/12 or fd00:10:96::/112")],
    release_cooldown_seconds: CooldownOption = 0,
    server: ServerOption = DEFAULT_SERVER,
    output: OutputOption = Format.TABLE,
) -> None:
    """Create a range (it must not overlap another)."""
    with connected(server) as api:
        created = api.create_range(name, cidr, release_cooldown_seconds=release_cooldown_seconds)
    emit(created, output, lambda: ranges_table([created]))


@app.command("set")
def set_range(
    name: Name,
    release_cooldown_seconds: CooldownOption,
    server: ServerOption = DEFAULT_SERVER,
    output: OutputOption = Format.TABLE,
) -> None:
    """Change a range's cool-down (it applies to later releases)."""
    change(name, server, output, release_cooldown_seconds=release_cooldown_seconds)


@app.command("resize")
def resize(
    name: Name,
    cidr: Annotated[
        str, typer.Argument(help="A CIDR that contains the range's (grow) or lies in it (shrink).")
    ],
    server: ServerOption = DEFAULT_SERVER,
    output: OutputOption = Format.TABLE,
) -> None:
    """Grow or shrink a range in place: every allocation keeps its address (a shrink that would
    leave some out is refused, naming them)."""
    change(name, server, output, cidr=cidr)


@app.command("drain")
def drain(
    name: Name, server: ServerOption = DEFAULT_SERVER, output: OutputOption = Format.TABLE
) -> None:
    """Stop new allocations from a range; what it holds stays, and can be released."""
    change(name, server, output, allocatable=False)


@app.command("resume")
def resume(
    name: Name, server: ServerOption = DEFAULT_SERVER, output: OutputOption = Format.TABLE
) -> None:
    """Let a drained range serve new allocations again."""
    change(name, server, output, allocatable=True)


def change(name: str, server: str, output: Format, **changes: Any) -> None:
    with connected(server) as api:
        changed = api.change_range(name, **changes)
    emit(changed, output, lambda: ranges_table([changed]))


@app.command("delete")
def delete(name: Name, server: ServerOption = DEFAULT_SERVER) -> None:
    """Delete a range that holds no allocation."""
    with connected(server) as api:
        api.delete_range(name)
    typer.echo(f"deleted range {name}")


def occupancy_view(occupancy: Occupancy) -> RenderableType:
    """Return the counts, the bands and the map of ``ranges show``."""
    r = occupancy["range"]
    heading = Text.assemble(
        (r["name"], "bold"),
        f"  {r['cidr']}  {r['family']}  ",
        state(r),
        f"  at revision {occupancy['revision']}",
    )
    totals = Text(
        f"size {count(r['size'])}   allocated {count(r['allocated'])}"
        f"   cooling {count(r['cooling'])}   free {count(r['free'])}"
        f"   use {percent(r['allocated'], r['size'])}   cool-down {cooldown(r)}"
    )
    bands = table("BAND", "FIRST", "LAST", "SIZE>", "USED>", "USE>", "")
    for band in occupancy["bands"]:
        bands.add_row(
            band["band"],
            band["first"] or "-",
            band["last"] or "-",
            count(band["size"]),
            count(band["used"]),
            percent(band["used"], band["size"]),
            bar(band["used"], band["size"]),
        )
    return Group(heading, totals, Text(), bands, Text(), occupancy_map(occupancy))


LEGEND = "· empty  ░ up to 25%  ▒ up to 50%  ▓ up to 75%  █ more"


def shade(used: int, size: int) -> Text:
    """Return one map cell: its character by how full it is, coloured like the bars."""
    if used == 0 or size == 0:
        return Text("·", style="dim")
    share = used / size
    glyph = "░" if share <= 0.25 else "▒" if share <= 0.5 else "▓" if share <= 0.75 else "█"
    return Text(glyph, style=fill_style(share))


def occupancy_map(occupancy: Occupancy) -> RenderableType:
    """Return the map: rows of cells, each a slice of the range, labelled with the first address
    of the row. A lazy (huge IPv6) range is drawn from its materialized blocks only: the rest of
    it is free by construction, and drawn to scale it would be empty but for invisible dots."""
    cells = occupancy["cells"]
    if cells is not None:
        span = max(c["size"] for c in cells) if cells else 0
        title = f"occupancy: {len(cells)} cells of about {count(span)} addresses each  ({LEGEND})"
        return grid(title, cells)
    blocks = occupancy["blocks"]
    materialized = len(blocks)
    total = sum(b["blocks"] for b in occupancy["bands"])
    title = (
        f"occupancy of the used part: {materialized} of {count(total)} blocks exist (4,096 "
        f"addresses each); the others are free  ({LEGEND})"
    )
    if not blocks:
        return Text(title)
    # Consecutive blocks merge into one cell when there are more blocks than cells.
    per_cell = -(-materialized // MAP_CELLS)
    merged: list[CellUsage] = []
    for start in range(0, materialized, per_cell):
        group = blocks[start : start + per_cell]
        merged.append(
            {
                "first": group[0]["first"],
                "last": group[-1]["last"],
                "size": sum(b["size"] for b in group),
                "used": sum(b["used"] for b in group),
            }
        )
    return grid(title, merged)


def grid(title: str, cells: list[CellUsage]) -> RenderableType:
    rows = [Text(title)]
    label_width = max(len(c["first"] or "") for c in cells) if cells else 0
    for start in range(0, len(cells), MAP_COLUMNS):
        line = Text((cells[start]["first"] or "").ljust(label_width) + "  ", style="dim")
        for cell in cells[start : start + MAP_COLUMNS]:
            line.append_text(shade(cell["used"], cell["size"]))
        rows.append(line)
    return Group(*rows)
