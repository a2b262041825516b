"""``allocator watch``: print the event feed as it arrives."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import httpx
import typer

from allocator.cli.output import EXIT_REFUSED, EXIT_UNREACHABLE, fail
from allocator.cli.remote import DEFAULT_SERVER, ServerOption
from allocator.client.errors import ProblemError
from allocator.client.watch import Backoff, Event, Reconnect, Watch


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


class Connection:
    """What the watch says on stderr about its connection: once when the server stops answering
    (and how often it retries), once when it answers again. The first connection is given up
    (exit 3) when it has not succeeded within ``wait`` seconds."""

    def __init__(self, server: str, wait: float, backoff: Backoff) -> None:
        self.server, self.wait, self.backoff = server, wait, backoff
        self.started = time.monotonic()
        self.answered_once = False
        self.down = False

    def retrying(self, reason: Exception) -> None:
        if isinstance(reason, Reconnect) and reason.relisting:
            typer.echo(str(reason), err=True)
            return
        if not self.answered_once and time.monotonic() - self.started >= self.wait:
            fail(
                f"no answer from the allocator at {self.server} within {self.wait:g} s",
                EXIT_UNREACHABLE,
            )
        if self.down:
            return
        self.down = True
        if isinstance(reason, httpx.TransportError):
            what = f"cannot reach the allocator at {self.server}: {reason or type(reason).__name__}"
        else:
            what = f"the allocator at {self.server} ended the watch ({reason})"
        typer.echo(f"{what}; retrying at most {self.backoff.cap:g} s apart", err=True)

    def answered(self) -> None:
        if self.down:
            typer.echo(f"reconnected to {self.server}", err=True)
        self.down = False
        self.answered_once = True


def watch(
    server: ServerOption = DEFAULT_SERVER,
    since: Annotated[
        int | None, typer.Option(min=0, help="Every event after this revision, then live.")
    ] = None,
    initial: Annotated[
        bool, typer.Option("--initial", help="List every range and allocation first.")
    ] = False,
    relist: Annotated[
        bool,
        typer.Option(
            "--relist",
            help="When the server cannot resume at the revision asked for (beyond its head, "
            "compacted, lost in a failover), list everything again instead of stopping (exit 1).",
        ),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds to try the first connection before giving up (exit 3); once the "
            "server has answered, the watch retries for as long as it runs.",
        ),
    ] = 30.0,
    output: Annotated[str, typer.Option("-o", "--output", help="table or json (NDJSON)")] = "table",
) -> None:
    """Print the event feed as it arrives (live events from now on, unless --since or --initial).

    It reconnects and resumes by itself, saying so on stderr; with -o json every event,
    bookmarks included, is printed as one JSON line.
    """
    if since is not None and initial:
        raise typer.BadParameter("give --since or --initial, not both")
    if output not in ("table", "json"):
        raise typer.BadParameter("--output is table or json")
    import orjson

    backoff = Backoff()
    connection = Connection(server, wait, backoff)
    feed = Watch(
        server,
        since=since,
        initial=initial,
        relist=relist,
        backoff=backoff,
        on_retry=connection.retrying,
    )
    try:
        for event in feed:
            if not connection.answered_once and output == "table":
                typer.echo(f"{'REVISION':>10}  {'TYPE':<14} {'IP / RANGE':<40} OWNER / CIDR")
            connection.answered()
            line = orjson.dumps(event).decode() if output == "json" else row(event)
            if line is not None:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
    except ProblemError as refused:
        hint = "; --relist lists everything instead" if refused.status == 410 else ""
        fail(f"{refused.detail} ({refused.status} {refused.type}){hint}", EXIT_REFUSED)
    except KeyboardInterrupt:
        pass
    finally:
        feed.close()
