"""``allocator watch``: print the event feed as it arrives."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from allocator.cli.output import EXIT_REFUSED, fail
from allocator.cli.remote import DEFAULT_SERVER, ServerOption
from allocator.client.errors import ProblemError
from allocator.client.watch import Event, Watch


def row(event: Event) -> str | None:
    """Return the table row of an event; None for a heartbeat bookmark (not worth a row)."""
    kind, revision = event["type"], event["revision"]
    if kind == "BOOKMARK":
        return (
            f"{revision:>10}  -- listed at revision {revision} --"
            if event.get("initial_end")
            else None
        )
    subject: dict[str, Any]
    if "allocation" in event:
        subject = dict(event["allocation"])
        what = f"{subject['ip']:<40} {subject['owner']}  (range {subject['range']})"
    elif "range" in event:
        subject = dict(event["range"])
        what = f"{subject['name']:<40} {subject['cidr']}"
    else:
        what = str(event.get("problem", ""))
    return f"{revision:>10}  {kind:<14} {what}"


def watch(
    server: ServerOption = DEFAULT_SERVER,
    since: Annotated[
        int | None, typer.Option(min=0, help="Every event after this revision, then live.")
    ] = None,
    initial: Annotated[
        bool, typer.Option("--initial", help="List every range and allocation first.")
    ] = False,
    output: Annotated[str, typer.Option("-o", "--output", help="table or json (NDJSON)")] = "table",
) -> None:
    """Print the event feed as it arrives (live events from now on, unless --since or --initial).

    It reconnects and resumes by itself; with -o json every event, bookmarks included, is
    printed as one JSON line. The token is ALLOCATOR_TOKEN's, when the server wants one.
    """
    if since is not None and initial:
        raise typer.BadParameter("give --since or --initial, not both")
    if output not in ("table", "json"):
        raise typer.BadParameter("--output is table or json")
    import orjson

    feed = Watch(server, since=since, initial=initial)
    if output == "table":
        typer.echo(f"{'REVISION':>10}  {'TYPE':<14} {'IP / RANGE':<40} OWNER / CIDR")
    try:
        for event in feed:
            line = orjson.dumps(event).decode() if output == "json" else row(event)
            if line is not None:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
    except ProblemError as refused:
        fail(f"{refused.detail} ({refused.status} {refused.type})", EXIT_REFUSED)
    except KeyboardInterrupt:
        pass
    finally:
        feed.close()
