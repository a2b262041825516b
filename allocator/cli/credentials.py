"""The credentials of the commands that call the server: ``--token``, ``--token-file`` and
``--ca-file``, which override ``ALLOCATOR_TOKEN`` and ``ALLOCATOR_CA_FILE``.

Every client built by this process (``allocator.client``: the admin commands, ``watch``, the
agent) reads those variables, so the options set them for the process, once, before any client
is made.
"""

from __future__ import annotations

import functools
import inspect
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from allocator.client.connection import CA_FILE_ENV, TOKEN_ENV, read_token_file

TokenOption = Annotated[
    str | None,
    typer.Option("--token", help="Bearer token (default: ALLOCATOR_TOKEN).", show_default=False),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        envvar="ALLOCATOR_TOKEN_FILE",
        help="A file holding the bearer token (kept out of the process list and the shell's "
        "history).",
    ),
]
CaFileOption = Annotated[
    Path | None,
    typer.Option(
        "--ca-file",
        help="PEM file of the CA that signed the server's certificate (default: "
        "ALLOCATOR_CA_FILE, else the system's trust store).",
    ),
]


def use_credentials(
    token: str | None = None, token_file: Path | None = None, ca_file: Path | None = None
) -> None:
    """Make the given credentials those of every client of this process; raise
    typer.BadParameter for a token file that cannot be read or a CA file that holds no CA."""
    if token_file is not None:
        try:
            token = read_token_file(token_file)
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"--token-file: {exc}") from exc
    if token is not None:
        os.environ[TOKEN_ENV] = token
    if ca_file is not None:
        try:
            ssl.create_default_context(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise typer.BadParameter(f"--ca-file: {ca_file}: {exc}") from exc
        os.environ[CA_FILE_ENV] = str(ca_file)


_CREDENTIALS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=option)
    for name, option in (
        ("token", TokenOption),
        ("token_file", TokenFileOption),
        ("ca_file", CaFileOption),
    )
]


def with_credentials(command: Callable[..., None]) -> Callable[..., None]:
    """Return ``command`` taking ``--token``, ``--token-file`` and ``--ca-file`` too, so that they
    can follow the command as well as precede it (``allocator ranges list --token T``)."""

    @functools.wraps(command)
    def run(
        *args: Any,
        token: str | None = None,
        token_file: Path | None = None,
        ca_file: Path | None = None,
        **kwargs: Any,
    ) -> None:
        use_credentials(token, token_file, ca_file)
        command(*args, **kwargs)

    signature = inspect.signature(command, eval_str=True)
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *_CREDENTIALS]
    )
    return run
