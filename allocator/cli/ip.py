"""``allocator ip``: who holds an address (and in which range and band), allocate, release."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from allocator.cli.output import FamilyName, Format, OutputOption, emit, table
from allocator.cli.remote import DEFAULT_SERVER, RemoteCommands, ServerOption, connected
from allocator.client import AllocatorClient, ProblemError
from allocator.client.models import Allocation
from allocator.domain.address import family_of, parse_address, parse_network
from allocator.domain.errors import InvalidRequest, IPNotInRange
from allocator.domain.range import ServiceRange

app = RemoteCommands(
    help="One address: show who holds it, allocate, release.", no_args_is_help=True
)

IP = Annotated[str, typer.Argument(help="An IPv4 or IPv6 address.")]


def address(text: str) -> str:
    """Return the canonical form of ``text``; a malformed address is a usage error (exit 2)."""
    try:
        return str(parse_address(text))
    except InvalidRequest as exc:
        raise typer.BadParameter(exc.detail) from None


def place(api: AllocatorClient, ip: str) -> dict[str, Any]:
    """Return the range holding ``ip`` and the band it is in (or why it is not usable)."""
    parsed = parse_address(ip)
    for r in api.list_ranges():
        geometry = ServiceRange.of(parse_network(r["cidr"]), check_limits=False)
        if not geometry.contains(parsed):
            continue
        try:
            band = geometry.band_of(geometry.offset_of(parsed)).kind.name.lower()
        except IPNotInRange as reason:
            return {"range": r["name"], "band": None, "usable": False, "reason": reason.detail}
        return {"range": r["name"], "band": band, "usable": True}
    return {"range": None, "band": None, "usable": False, "reason": f"{ip} is in no range"}


def key_values(rows: list[tuple[str, str]]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


def allocation_rows(allocation: Allocation) -> list[tuple[str, str]]:
    return [
        ("ip", allocation["ip"]),
        ("owner", allocation["owner"]),
        ("range", allocation["range"]),
        ("family", allocation["family"]),
        ("since", allocation["created_at"]),
        ("revision", str(allocation["revision"])),
        ("metadata", orjson.dumps(allocation["metadata"]).decode()),
    ]


@app.command("show")
def show(
    ip: IP, server: ServerOption = DEFAULT_SERVER, output: OutputOption = Format.TABLE
) -> None:
    """Which range holds an address, whether it is free, in which band, who holds it, since
    when, and its metadata."""
    canonical = address(ip)
    with connected(server) as api:
        where = place(api, canonical)
        cooling: dict[str, Any] | None = None
        try:
            held: Allocation | None = api.get_allocation(canonical)
        except ProblemError as refused:
            if refused.type != "ip-not-allocated":
                raise
            held = None
            if "available_at" in refused.problem:
                cooling = {k: refused.problem[k] for k in ("available_at", "released_by")}
    document = {
        "ip": canonical,
        **where,
        "free": held is None and cooling is None,
        "allocation": held,
        "cooling": cooling,
    }

    def table() -> Table:
        rows = [("ip", canonical), ("range", where["range"] or "-")]
        rows.append(("band", where["band"] or f"- ({where['reason']})"))
        if cooling is not None:
            rows.append(("state", f"cooling down until {cooling['available_at']}"))
            rows.append(("released by", cooling["released_by"]))
        elif held is None:
            rows.append(("state", "free" if where["usable"] else "not allocatable"))
        else:
            rows.append(("state", "allocated"))
            rows += [(k, v) for k, v in allocation_rows(held) if k not in ("ip", "range")]
        return key_values(rows)

    emit(document, output, table)


def metadata_object(text: str | None) -> dict[str, Any] | None:
    """Return the JSON object given with --metadata; anything else is a usage error."""
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--metadata")
    return value


@app.command("allocate")
def allocate(
    owner: Annotated[str, typer.Option(help="Who holds it, e.g. namespace/name.")],
    ip: Annotated[str | None, typer.Option(help="This address (user-requested).")] = None,
    range_name: Annotated[str | None, typer.Option("--range", help="From this range.")] = None,
    family: Annotated[
        list[FamilyName] | None,
        typer.Option(
            case_sensitive=False,
            help="IPv4 or IPv6 (in any case); both (--family IPv4 --family IPv6): a dual-stack pair.",
        ),
    ] = None,
    metadata: Annotated[str | None, typer.Option(help="A JSON object kept with it.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    output: OutputOption = Format.TABLE,
) -> None:
    """Allocate an address to OWNER: a random free one, or --ip. Asking again returns the one
    the owner already holds. With several --family, one of each in one transaction: all of
    them or none (RequireDualStack)."""
    body = metadata_object(metadata)
    families = [str(f) for f in dict.fromkeys(family or [])]
    wanted = address(ip) if ip else None
    if len(families) > 1:
        if range_name:
            raise typer.BadParameter("a range has one family", param_hint="--range")
        ips = {str(family_of(parse_address(wanted))): wanted} if wanted else None
        with connected(server) as api:
            pair = api.dual_stack(owner, families=families, ips=ips, metadata=body)
        emit(pair, output, lambda: allocations_table(pair))
        return
    with connected(server) as api:
        allocation = api.allocate(
            owner,
            ip=wanted,
            range=range_name,
            family=families[0] if families else None,
            metadata=body,
        )
    emit(allocation, output, lambda: key_values(allocation_rows(allocation)))


def allocations_table(allocations: list[Allocation]) -> Table:
    drawn = table("IP", "FAMILY", "RANGE", "OWNER", "REVISION>")
    for a in allocations:
        drawn.add_row(a["ip"], a["family"], a["range"], a["owner"], str(a["revision"]))
    return drawn


@app.command("release")
def release(
    ip: IP,
    owner: Annotated[
        str | None, typer.Option(help="Only if this owner holds it (a late release is refused).")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Release an address."""
    canonical = address(ip)
    with connected(server) as api:
        api.release(canonical, owner=owner)
    typer.echo(f"released {canonical}")
