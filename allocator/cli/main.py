"""``allocator``: serve the API, manage its database."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from allocator.cli import agent, allocations, ip, ranges, token, verify, watch
from allocator.cli.credentials import (
    CaFileOption,
    TokenFileOption,
    TokenOption,
    use_credentials,
    with_credentials,
)
from allocator.cli.database import database as _database
from allocator.cli.remote import SERVER_ENV, server_url
from allocator.cli.security import check_exposure, tls_options
from allocator.settings import Settings
from allocator.store.database import create_engine

app = typer.Typer(help="The ClusterIP allocator.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database administration.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.command("watch")(with_credentials(watch.watch))
app.command("agent")(with_credentials(agent.agent))
app.add_typer(token.app, name="token")


@app.callback()
def connection(
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            callback=server_url,
            help="Base URL of the allocator, for every command that calls it (default: "
            "ALLOCATOR_URL, else http://127.0.0.1:8080; --server after the command wins).",
            show_default=False,
        ),
    ] = None,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
) -> None:
    """The ClusterIP allocator."""
    if server is not None:
        os.environ[SERVER_ENV] = server  # the default of each command's own --server
    use_credentials(token, token_file, ca_file)


app.add_typer(ranges.app, name="ranges")
app.add_typer(ip.app, name="ip")
app.add_typer(allocations.app, name="allocations")
app.command("verify")(verify.verify)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes sharing the port: replicas, each with its own connection pool"
            " (ALLOCATOR_POOL_SIZE connections each).",
        ),
    ] = 1,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="Serve an open API (no tokens) on an address other than loopback."
        ),
    ] = False,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate (chain): serve HTTPS.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
) -> None:
    """Start the API server (migrations are applied at start)."""
    import uvicorn

    from allocator.api.app import create_app
    from allocator.api.collector import tune_for_serving
    from allocator.api.logs import configure_logging, logging_config

    settings = Settings()
    configure_logging(log_level, settings.log_format)
    tls = tls_options(tls_cert, tls_key)
    check_exposure(settings, host, insecure=insecure)
    url, embedded = _database(settings)
    settings = settings.model_copy(update={"database_url": url})
    if workers > 1:
        # Each worker process builds its own app from the environment; replicas are safe because
        # allocation safety lives in Postgres, not in process memory.
        os.environ["ALLOCATOR_DATABASE_URL"] = url
        uvicorn.run(
            "allocator.api.app:create_served_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            log_config=logging_config(log_level, settings.log_format),
            **tls,
        )
    else:
        served = create_app(settings)
        tune_for_serving()
        uvicorn.run(
            served,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            log_config=logging_config(log_level, settings.log_format),
            **tls,
        )
    del embedded  # kept referenced until the server stops


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from allocator.store import migration

    settings = Settings()
    url, embedded = _database(settings)

    async def upgrade() -> str | None:
        engine = create_engine(url, settings)
        try:
            await migration.upgrade(engine)
        finally:
            await engine.dispose()
        return migration.newest_revision()

    typer.echo(f"database at migration {asyncio.run(upgrade())}")
    del embedded


if __name__ == "__main__":  # pragma: no cover
    app()
