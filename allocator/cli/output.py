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
from rich.console import Console, RenderableType
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


FamilyOption = Annotated[FamilyName | None, typer.Option(help="IPv4 or IPv6.")]

OutputOption = Annotated[
    Format, typer.Option("-o", "--output", help="table for people; json or yaml for scripts.")
]


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def emit(document: Any, output: Format, table: Callable[[], RenderableType | None]) -> None:
    """Print ``document`` as JSON or YAML, or ``table()`` when the output is a table."""
    if output is Format.JSON:
        typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    elif output is Format.YAML:
        typer.echo(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), nl=False)
    else:
        renderable = table()
        if renderable is not None:
            stdout().print(renderable)


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
