"""How admin commands print: tables for people, JSON and YAML (exactly the API objects) for
scripts, and errors as one plain line on stderr."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import orjson
import typer
import yaml
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

EXIT_REFUSED = 1
"""The server (or the store, for verify) refused or found something wrong."""
EXIT_UNREACHABLE = 3
"""The server or the database could not be reached (worth retrying)."""


class Format(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


class FamilyName(enum.StrEnum):
    IPV4 = "IPv4"
    IPV6 = "IPv6"


FamilyOption = Annotated[
    FamilyName | None, typer.Option(case_sensitive=False, help="IPv4 or IPv6 (in any case).")
]

OutputOption = Annotated[
    Format, typer.Option("-o", "--output", help="table for people; json or yaml for scripts.")
]


PIPED_WIDTH = 100_000
"""The width of output that goes to a file or a pipe: as wide as its longest line."""


def stdout() -> Console:
    """The console of tables: in a terminal as wide as the terminal; piped, never narrower than
    what it prints. Values are printed as they are (no markup, no ``:emoji:`` codes: an IPv6
    address such as ``fd00:1234::`` holds one)."""
    options: dict[str, Any] = {"highlight": False, "markup": False, "emoji": False}
    console = Console(soft_wrap=False, **options)
    if console.is_terminal:
        return console
    return Console(soft_wrap=False, width=PIPED_WIDTH, **options)


def stderr() -> Console:
    return Console(stderr=True, highlight=False, markup=False, emoji=False)


def table(*columns: str) -> Table:
    """Return a table with these headers; a header ending in ``>`` is right-aligned (a count)
    and an empty one is decorative (a bar), the first thing to go when the table is too wide.
    No cell is ever cut: what does not fit wraps."""
    drawn = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        right = column.endswith(">")
        drawn.add_column(column.rstrip(">"), justify="right" if right else "left", overflow="fold")
    return drawn


def fit(renderable: RenderableType, console: Console) -> RenderableType:
    """Drop the decorative columns of the tables in ``renderable`` wider than the console."""
    parts = renderable.renderables if isinstance(renderable, Group) else [renderable]
    unbounded = console.options.update_width(PIPED_WIDTH)
    for part in parts:
        if (
            isinstance(part, Table)
            and console.measure(part, options=unbounded).maximum > console.width
        ):
            part.columns = [column for column in part.columns if column.header != ""]
    return renderable


def emit(document: Any, output: Format, view: Callable[[], RenderableType | None]) -> None:
    """Print ``document`` as JSON or YAML, or ``view()`` when the output is a table."""
    if output is Format.JSON:
        typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    elif output is Format.YAML:
        typer.echo(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), nl=False)
    else:
        renderable = view()
        if renderable is not None:
            console = stdout()
            console.print(fit(renderable, console))


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def count(n: int) -> str:
    """Return a count people can read: ``1,048,574``, or ``≈2^64`` past ten digits."""
    if n < 10**10:
        return f"{n:,}"
    return f"≈2^{math.log2(n):.0f}"


def percent(used: int, size: int) -> str:
    if size == 0:
        return "-"
    share = 100 * used / size
    if 0 < share < 0.01:
        return "<0.01%"
    return f"{share:.2f}%"


def fill_style(share: float) -> str:
    """Return the colour of a fill ratio: green, then yellow from 70%, red from 90%."""
    return "red" if share >= 0.9 else "yellow" if share >= 0.7 else "green"


def bar(used: int, size: int, width: int = 12) -> Text:
    """Return a bar of ``width`` cells filled in proportion (eighths of a cell)."""
    share = used / size if size else 0.0
    eighths = round(share * width * 8)
    if used and not eighths:
        eighths = 1  # something is taken: never draw an empty bar
    full, part = divmod(eighths, 8)
    drawn = "█" * full + ("" if not part else " ▏▎▍▌▋▊▉"[part])
    return Text(drawn.ljust(width, "·"), style=fill_style(share))
