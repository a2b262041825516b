"""Reaching the server from a command: the ``--server`` option and one clear line (and exit
code) for each way a call can fail, never a traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from allocator.cli.credentials import with_credentials
from allocator.cli.output import EXIT_REFUSED, EXIT_UNREACHABLE, fail
from allocator.client import AllocatorClient, ProblemError, ServerUnreachable

DEFAULT_SERVER = "http://127.0.0.1:8080"
SERVER_ENV = "ALLOCATOR_URL"


def server_url(url: str | None) -> str | None:
    """Return ``url``; one without a scheme (``localhost:8080``) is a usage error that names the
    URL probably meant."""
    if url is not None and "://" not in url:
        raise typer.BadParameter(f"{url!r} is not a URL: did you mean http://{url}?")
    return url


ServerOption = Annotated[
    str,
    typer.Option(
        "--server",
        envvar=SERVER_ENV,
        callback=server_url,
        help="Base URL of the allocator.",
        show_default=True,
    ),
]


class RemoteCommands(typer.Typer):
    """Commands that call the server: each takes the credential options after it too."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., None]], Any]:
        register = super().command(*args, **kwargs)
        return lambda command: register(with_credentials(command))


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
