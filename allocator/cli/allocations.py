"""``allocator allocations list``: every allocation, filtered, paged through transparently."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from allocator.cli.output import FamilyOption, Format, OutputOption, emit, table
from allocator.cli.remote import DEFAULT_SERVER, RemoteCommands, ServerOption, connected

app = RemoteCommands(help="Allocations: who holds what.", no_args_is_help=True)


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

    def view() -> Table | Text:
        if not items:
            return Text("no allocations")
        drawn = table("IP", "OWNER", "RANGE", "FAMILY", "SINCE", "REVISION>")
        for a in items:
            drawn.add_row(
                a["ip"], a["owner"], a["range"], a["family"], a["created_at"], str(a["revision"])
            )
        return drawn

    emit({"items": items}, output, view)
