"""``allocator allocations list``: every allocation, filtered, paged through transparently."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from allocator.cli.output import FamilyOption, Format, OutputOption, emit
from allocator.cli.remote import DEFAULT_SERVER, ServerOption, connected

app = typer.Typer(help="Allocations: who holds what.", no_args_is_help=True)


@app.command("list")
def list_allocations(
    range_name: Annotated[str | None, typer.Option("--range", help="Of this range.")] = None,
    owner: Annotated[str | None, typer.Option(help="Of this owner.")] = None,
    family: FamilyOption = None,
    server: ServerOption = DEFAULT_SERVER,
    output: OutputOption = Format.TABLE,
) -> None:
    """Every matching allocation in address order (all pages)."""
    with connected(server) as api:
        items = list(
            api.iter_allocations(
                range=range_name, owner=owner, family=str(family) if family else None
            )
        )

    def table() -> Table | Text:
        if not items:
            return Text("no allocations")
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("IP", "OWNER", "RANGE", "FAMILY", "SINCE"):
            table.add_column(column, no_wrap=True)
        table.add_column("REVISION", justify="right")
        for a in items:
            table.add_row(
                a["ip"], a["owner"], a["range"], a["family"], a["created_at"], str(a["revision"])
            )
        return table

    emit({"items": items}, output, table)
