"""Safe defaults of ``allocator serve``: who may reach an open server, and TLS.

Without a tokens file the API is open: anyone who can connect may create and delete ranges. That
is acceptable on loopback only (one machine, a developer, a demo), so ``serve`` refuses any other
listen address without tokens unless it is told ``--insecure``, and says at start that it is open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import netaddr
import typer

from allocator.domain.token import TokenFileError
from allocator.settings import Settings
from allocator.store.token_file import read_records


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address as given to ``--host``) is a loopback address."""
    if host == "localhost":
        return True
    try:
        return bool(netaddr.IPAddress(host, flags=netaddr.INET_PTON).is_loopback())
    except (netaddr.AddrFormatError, ValueError):
        return False


def check_exposure(settings: Settings, host: str, *, insecure: bool) -> None:
    """Refuse (typer.Exit 2) to serve an open API beyond loopback unless ``insecure``, or with a
    tokens file that cannot be read; say on stderr when the API is open."""
    if settings.tokens_file is not None:
        try:
            read_records(settings.tokens_file)
        except (OSError, TokenFileError) as exc:
            typer.echo(f"error: ALLOCATOR_TOKENS_FILE: {exc}", err=True)
            raise typer.Exit(2) from exc
        return
    if not is_loopback(host) and not insecure:
        typer.echo(
            f"error: no tokens are configured (ALLOCATOR_TOKENS_FILE), so anyone reaching "
            f"{host} could change every allocation. Create tokens with 'allocator token create', "
            "listen on 127.0.0.1, or pass --insecure to serve an open API anyway.",
            err=True,
        )
        raise typer.Exit(2)
    typer.echo(
        f"warning: no tokens configured (ALLOCATOR_TOKENS_FILE): the API is OPEN to anyone "
        f"who can reach {host}",
        err=True,
    )


def tls_options(cert: Path | None, key: Path | None) -> dict[str, Any]:
    """Return uvicorn's TLS arguments; both files or neither (typer.BadParameter otherwise)."""
    if (cert is None) != (key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    if cert is None or key is None:
        return {}
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
