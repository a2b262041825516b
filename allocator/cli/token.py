"""``allocator token``: create bearer tokens and list who holds one.

The tokens file (``ALLOCATOR_TOKENS_FILE`` or ``--file``) keeps one line per token: its name, its
role and the SHA-256 of the token. The token itself is printed once, at creation, and stored
nowhere; a running server picks up a new line within a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from allocator.domain.token import Role, TokenFileError, new_token, record_for
from allocator.store.token_file import append_record, read_records

app = typer.Typer(help="Bearer tokens of the API (admin, allocator, reader).", no_args_is_help=True)

TokensFile = Annotated[
    Path,
    typer.Option(
        "--file",
        envvar="ALLOCATOR_TOKENS_FILE",
        help="The tokens file (created with mode 0600 when absent).",
    ),
]


@app.command("create")
def create(
    file: TokensFile,
    role: Annotated[
        Role,
        typer.Option(
            help="admin: everything; allocator: allocate, release and read; reader: read and watch."
        ),
    ],
    name: Annotated[
        str | None, typer.Option(help="Who holds it (logged with every change it makes).")
    ] = None,
) -> None:
    """Print a new random token (once: only its hash is kept) and add it to the tokens file."""
    try:
        existing = read_records(file) if file.exists() else []
        name = name or f"{role}-{len(existing) + 1}"
        if any(record.name == name for record in existing):
            raise TokenFileError(f"a token named {name!r} exists already in {file}")
        token = new_token()
        append_record(file, record_for(token, name, role))
    except (OSError, TokenFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"created token {name!r} (role {role}) in {file}; it is shown only now:", err=True)
    typer.echo(token)


@app.command("list")
def list_tokens(file: TokensFile) -> None:
    """Print the name and role of every token (the tokens themselves are not stored)."""
    try:
        records = read_records(file)
    except (OSError, TokenFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for record in records:
        typer.echo(f"{record.name}\t{record.role}")
