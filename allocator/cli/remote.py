"""Reaching the server from a command: the ``--server`` option and one clear line (and exit
code) for each way a call can fail, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from allocator.cli.output import EXIT_REFUSED, EXIT_UNREACHABLE, fail
from allocator.client import AllocatorClient, ProblemError, ServerUnreachable

DEFAULT_SERVER = "http://127.0.0.1:8080"

ServerOption = Annotated[
    str,
    typer.Option(
        "--server", envvar="ALLOCATOR_URL", help="Base URL of the allocator.", show_default=True
    ),
]


@contextmanager
def connected(server: str) -> Iterator[AllocatorClient]:
    """Yield a client of ``server``. A refusal prints the problem's detail and exits 1; a
    server that cannot be reached prints one line and exits 3."""
    try:
        with AllocatorClient(server) as api:
            yield api
    except ProblemError as refused:
        fail(f"{refused.detail} ({refused.status} {refused.type})", EXIT_REFUSED)
    except ServerUnreachable as unreachable:
        cause = unreachable.__cause__
        fail(f"cannot reach the allocator at {server}: {cause or unreachable}", EXIT_UNREACHABLE)
