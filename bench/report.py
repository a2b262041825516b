"""The report of a run: the machine, a table on the terminal, a JSON file and two charts."""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table


def describe_machine(postgres_version: str) -> dict[str, Any]:
    """Return what the figures depend on: CPUs, memory, load, Postgres, Python."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil

    pgbench = shutil.which("pgbench")
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_bytes": psutil.virtual_memory().total,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgres": postgres_version,
        "pgbench": subprocess.run(
            [pgbench, "--version"], capture_output=True, text=True
        ).stdout.strip()
        if pgbench
        else None,
    }


def ratio(value: float, reference: float) -> float:
    return value / reference if reference and not math.isnan(reference) else float("nan")


def _number(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_report(results: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    machine = results["machine"]
    console.print(
        f"[bold]{machine['cpu_count']} CPUs[/] {machine['cpu_model']}, Python {machine['python']},"
        f" {machine['postgres'].split(' on ')[0]}, load {machine['load_average']}"
    )
    reference = results["reference"]
    table = Table(title="Throughput: allocations per second (closed loop)")
    table.add_column("path")
    clients = [row["clients"] for row in next(iter(results["throughput"].values()))]
    for n in clients:
        table.add_column(f"{n} clients", justify="right")
    table.add_column("load gen CPU (cores) @32", justify="right")
    table.add_row("pgbench one-row UPDATE", *[
        _number(reference["tps"].get(str(n), float("nan")), 0) for n in clients
    ], "")  # fmt: skip
    for name, rows in results["throughput"].items():
        at32 = next((r for r in rows if r["clients"] == 32), rows[-1])
        table.add_row(
            name,
            *[
                f"{_number(r['per_second'], 0)} ({ratio(r['per_second'], reference['tps']['32']):.2f}x)"
                for r in rows
            ],
            _number(at32["load_cpu_cores"]),
        )
    console.print(table)

    churn = Table(title="Churn: allocations and owner-guarded releases alternating, 32 connections")
    for column in ("path", "requests/s", "vs pgbench @32", "p50 ms", "p99 ms"):
        churn.add_column(column, justify="left" if column == "path" else "right")
    for name, row in results["churn"].items():
        churn.add_row(
            name, _number(row["per_second"], 0), f"{ratio(row['per_second'], reference['tps']['32']):.2f}x",
            _number(row["p50_ms"], 3), _number(row["p99_ms"], 3),
        )  # fmt: skip
    console.print(churn)

    latency = Table(title="Latency of one allocation (ms)")
    for column in ("what", "p50", "p99", "p99.9", "n"):
        latency.add_column(column, justify="left" if column == "what" else "right")
    latency.add_row(
        "pgbench one-row UPDATE, 1 client", _number(reference["p50_ms"]["1"], 3), "", "", ""
    )
    count = results["range_count"]["latency"]
    for name, row in {**results["latency"], **results["flat_cost"], **count}.items():
        latency.add_row(
            name, _number(row["p50_ms"], 3), _number(row["p99_ms"], 3), _number(row["p999_ms"], 3),
            _number(row["count"]),
        )  # fmt: skip
    console.print(latency)

    print_cpu(results["cpu"], console)
    trips = Table(title="Round trips to Postgres per operation (mean)")
    for column in ("operation", "the request's own", "max", "statements", "others after it"):
        trips.add_column(column, justify="left" if column == "operation" else "right")
    for kind, row in results["round_trips"].items():
        trips.add_row(
            kind, _number(row["request"]), _number(row["request_max"]),
            _number(row["statements"]), _number(row["other"]),
        )  # fmt: skip
    console.print(trips)

    other = Table(title="Fill and size")
    other.add_column("what")
    other.add_column("figure", justify="right")
    fill = results["fill_time"]
    other.add_row(
        f"time to fill a {fill['cidr']} ({fill['addresses']:,} addresses, {fill['clients']} HTTP clients)",
        f"{fill['seconds']:.1f} s ({fill['per_second']:,.0f}/s)",
    )
    size = results["database_size"]
    other.add_row(
        f"database size after {size['allocations']:,} allocations in a /64",
        f"{size['bytes'] / 2**20:.1f} MiB ({size['bytes_per_allocation']:.0f} B each, {size['blocks']} blocks)",
    )
    other.add_row(
        f"making {results['range_count']['ranges'] - 1:,} full /30 ranges",
        f"{results['range_count']['setup_seconds']:.1f} s",
    )
    feed = results["event_delivery"]
    other.add_row(
        "event delivery (commit to watcher)", str(feed.get("summary", feed.get("status")))
    )
    console.print(other)

    resized = Table(
        title=f"Resize online ({results['resize']['clients']} clients allocating in the range meanwhile)"
    )
    for column in (
        "grow",
        "resize",
        "allocation p50 before",
        "allocations during it",
        "their p50",
        "their longest",
    ):
        resized.add_column(column, justify="left" if column == "grow" else "right")
    for name, row in results["resize"].items():
        if name == "clients":
            continue
        resized.add_row(
            name, f"{_number(row['resize_ms'], 0)} ms", f"{_number(row['allocation_p50_ms_before'], 1)} ms",
            str(row["waiting_allocations"]), f"{_number(row['waited_p50_ms'], 0)} ms",
            f"{_number(row['waited_max_ms'], 0)} ms",
        )  # fmt: skip
    console.print(resized)

    targets = Table(title="Targets (ratios measured in this run)")
    for column in ("target", "measured", "ratio", "goal", "met"):
        targets.add_column(column)
    for t in results["targets"]:
        met = t["met"]
        shown = "pending" if met is None else "[green]yes[/]" if met else "[red]no[/]"
        if t.get("stretch_met"):
            shown += " (stretch too)"
        targets.add_row(t["name"], t["measured"], _number(t["ratio"]), t["goal"], shown)
    console.print(targets)


def print_cpu(figures: dict[str, Any], console: Console) -> None:
    """The CPU table: each kind of request next to its reference, medians of the rounds."""
    from bench.cpu import BARE, UPDATE

    server = figures["server_ms"]
    backend = figures["backend"].get("ms", {})
    table = Table(
        title=f"CPU per request (ms; median of {figures['rounds']} interleaved rounds of"
        f" {figures['requests_per_round']:,} sequential requests)"
    )
    for column in ("request", "server process", "vs bare FastAPI", "Postgres backends",
                   "vs one-row UPDATE"):  # fmt: skip
        table.add_column(column, justify="left" if column == "request" else "right")
    for kind, ms in server.items():
        if kind == BARE:
            continue
        pg = backend.get(kind)
        table.add_row(
            kind, _number(ms, 3), f"{ratio(ms, server[BARE]):.1f}x",
            _number(pg, 3) if pg is not None else "",
            f"{ratio(pg, backend[UPDATE]):.1f}x" if pg is not None else "",
        )  # fmt: skip
    table.add_row(BARE, _number(server[BARE], 3), "1x", "", "")
    if UPDATE in backend:
        table.add_row(UPDATE, "", "", _number(backend[UPDATE], 3), "1x")
    console.print(table)
    if "skipped" in figures["backend"]:
        console.print(f"Postgres backends not measured: {figures['backend']['skipped']}")


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def draw_charts(results: dict[str, Any], directory: Path) -> list[Path]:
    """Write throughput-vs-clients and latency-vs-fill charts; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    machine = results["machine"]
    where = f"{machine['cpu_count']} CPUs, {machine['postgres'].split(' on ')[0]}"
    paths = []
    figure, axes = plt.subplots(figsize=(8, 5))
    reference = results["reference"]["tps"]
    for name, rows in results["throughput"].items():
        axes.plot(
            [r["clients"] for r in rows], [r["per_second"] for r in rows], marker="o", label=name
        )
    points = sorted((int(n), tps) for n, tps in reference.items())
    axes.plot(
        [n for n, _ in points], [tps for _, tps in points], "k--", marker="s",
        label="pgbench one-row UPDATE (reference)",
    )  # fmt: skip
    axes.axhline(
        reference["32"] * 0.3, color="grey", linestyle=":", label="target: 0.3 x pgbench @32"
    )
    axes.axhline(
        reference["32"] * 0.5, color="grey", linestyle="-.", label="stretch: 0.5 x pgbench @32"
    )
    axes.set_xscale("log", base=2)
    axes.set_xticks([r["clients"] for r in next(iter(results["throughput"].values()))])
    axes.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.set_xlabel("concurrent clients")
    axes.set_ylabel("allocations (transactions) per second")
    axes.set_title(f"Allocation throughput vs clients ({where})")
    paths.append(_save(figure, axes, directory / "bench-throughput.png"))

    figure, axes = plt.subplots(figsize=(8, 5))
    flat = results["flat_cost"]
    fills = [k for k in flat if k.startswith("/16 at")]
    labels = [k.removeprefix("/16 at ").removesuffix(" fill") for k in fills]
    for key, style in (("p50_ms", "o-"), ("p99_ms", "^-")):
        axes.plot(labels, [flat[k][key] for k in fills], style, label=f"/16 {key[:-3]}")
    for name, style in (("empty /24", "g--"), ("empty /12", "b:"), ("empty IPv6 /64", "m-.")):
        axes.axhline(flat[name]["p50_ms"], linestyle=style[1:], color=style[0], label=f"{name} p50")
    axes.set_xlabel("fill of the /16")
    axes.set_ylabel("allocation latency, one client over HTTP (ms)")
    axes.set_title(f"Allocation latency vs fill ({where})")
    paths.append(_save(figure, axes, directory / "bench-fill.png"))
    return paths


def _save(figure: Any, axes: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    axes.set_ylim(bottom=0)
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
