"""``allocator agent``: the reference node agent (nftables)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated

import typer

from allocator.cli.remote import DEFAULT_SERVER, ServerOption


def agent(
    server: ServerOption = DEFAULT_SERVER,
    scheduler: Annotated[
        str, typer.Option(help="How a connection picks one of several endpoints: random or rr.")
    ] = "random",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print each nft script instead of applying it.")
    ] = False,
    debounce_ms: Annotated[
        int, typer.Option(min=0, help="Wait this long after a change, to batch a burst.")
    ] = 50,
    status_port: Annotated[
        int | None, typer.Option(help="Serve the lag as JSON on this loopback port.")
    ] = None,
    report_seconds: Annotated[float, typer.Option(min=0.1, help="Log the lag this often.")] = 30.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Keep this node's nftables in step with the feed: allocated VIPs, DNAT of VIP ports to
    the endpoints named in the metadata, and a fast reject for unallocated range addresses."""
    from allocator.agent.nft import Scheduler
    from allocator.agent.reconciler import Agent, AgentOptions, nft_apply, print_script

    if scheduler not in ("random", "rr"):
        raise typer.BadParameter("--scheduler is random or rr")
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    options = AgentOptions(
        scheduler=Scheduler(scheduler),
        debounce=debounce_ms / 1000,
        report_seconds=report_seconds,
        status_port=status_port,
    )
    runner = Agent(server, print_script if dry_run else nft_apply, options)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runner.run())
