"""``python -m bench [--quick]``: measure the allocator against this machine's Postgres.

Starts what it needs (a fresh database on ``ALLOCATOR_BENCH_DATABASE_URL``'s server, or on an
embedded Postgres; ``allocator serve`` processes on it), measures the pgbench reference and every
figure in the same run, prints a table, and writes ``bench/results/results.json`` and two charts.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from allocator.service import allocations, ranges
from allocator.service.group_commit import AllocationBatcher
from allocator.settings import Settings
from allocator.store import migration
from allocator.store.database import create_engine
from bench import database, feed, reference, report, scenarios, server

RESULTS = Path(__file__).parent / "results"
DOCS = Path(__file__).parent.parent / "docs"
CLIENTS = [1, 8, 32, 64]


@dataclass(frozen=True)
class Plan:
    seconds: float
    warmup: float
    reference_seconds: float
    latency_seconds: float
    samples: int
    fill_cidr: str
    size_allocations: int
    pool_size: int
    """Connections per engine and per server process. The quick run shares a Postgres with test
    runs (``max_connections`` is often 100), so it keeps fewer."""

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(0.4, 0.15, 1, 1.0, 30, "10.34.0.0/22", 2_000, 8)
        return cls(3.0, 0.5, 4, 5.0, 400, "10.34.0.0/16", 100_000, Settings().pool_size)


def http_variants() -> dict[str, tuple[int, dict[str, str]]]:
    """Server configurations to measure over HTTP: name -> (workers, environment)."""
    return {
        "HTTP, 1 process": (1, {}),
        "HTTP, 1 process, group commit off": (1, {"ALLOCATOR_GROUP_COMMIT_MAX": "1"}),
        "HTTP, 2 processes": (2, {}),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = Plan.of(args.quick)
    rng = random.Random(args.seed)
    results: dict[str, Any] = {
        "command": " ".join(["python -m bench", *map(shlex.quote, sys.argv[1:])]),
        "mode": "quick" if args.quick else "full",
        "started_at": datetime.now(UTC).isoformat(),
        "plan": plan.__dict__,
    }
    base = database.base_url(args.database_url)
    async with database.fresh_database(base) as dsn:
        admin = await asyncpg.connect(dsn)
        settings = Settings(database_url=dsn, pool_size=plan.pool_size)
        engine = create_engine(dsn, settings)
        try:
            await migration.upgrade(engine)
            version = await admin.fetchval("SELECT version()")
            results["machine"] = report.describe_machine(version)
            cpus = results["machine"]["cpu_count"] or 1
            say = print if not args.json_only else (lambda *_: None)

            say("reference: pgbench one-row UPDATE at 1 and 32 clients")
            before = [
                await reference.measure(dsn, n, plan.reference_seconds, cpus) for n in (1, 32)
            ]

            await ranges.create_range(engine, "throughput", "10.0.0.0/12")

            async def reset() -> None:
                await database.release_all(admin, "throughput")

            throughput: dict[str, list[dict[str, Any]]] = {}
            variants = http_variants()
            main_name = next(iter(variants))
            for name, (workers, env) in variants.items():
                say(f"throughput: {name}")
                pool = {"ALLOCATOR_POOL_SIZE": str(plan.pool_size)}
                with server.running(dsn, workers, **pool, **env) as srv:
                    clients = scenarios.HttpClients(srv.url)
                    try:
                        throughput[name] = await scenarios.throughput(
                            lambda tag, c=clients: scenarios.http_allocation(c, "throughput", tag),
                            reset, CLIENTS, plan.seconds, plan.warmup, srv.cpu_seconds,
                            clients.close,  # the server closes connections idle for 5 s
                        )  # fmt: skip
                        if name != main_name:
                            continue
                        best = max(r["per_second"] for r in throughput[name])
                        say(f"latency: offered {best / 2:.0f}/s (half the maximum)")
                        offered = await scenarios.offered_latency(
                            scenarios.http_allocation(clients, "throughput", "offered"),
                            best / 2, plan.latency_seconds, 64,
                        )  # fmt: skip
                        await reset()
                        await clients.close()
                        say("flat cost: latency by range size and fill")
                        results["flat_cost"] = await scenarios.flat_cost(
                            engine, admin, clients, plan.samples, rng
                        )
                        await clients.close()
                        say(f"fill time: {plan.fill_cidr}")
                        results["fill_time"] = await scenarios.fill_time(
                            clients, engine, plan.fill_cidr, 32
                        )
                    finally:
                        await clients.close()

            for name, allocate in service_variants(engine).items():
                say(f"throughput: {name}")
                throughput[name] = await scenarios.throughput(
                    lambda tag, a=allocate: scenarios.service_allocation(a, "throughput", tag),
                    reset, CLIENTS, plan.seconds, plan.warmup,
                )  # fmt: skip
            results["throughput"] = throughput
            await engine.dispose()  # its connections stay closed unless used again
            single = throughput[main_name][0]
            results["latency"] = {
                "HTTP, 1 client, closed loop": single,
                f"HTTP, offered {offered['offered_per_second']:.0f}/s (half max)": offered,
            }

            say(f"database size: {plan.size_allocations:,} allocations in a /64")
            async with database.fresh_database(base) as size_dsn:
                results["database_size"] = await measure_size(size_dsn, plan)

            say("event delivery")
            results["event_delivery"] = await feed.measure(base, args.quick)

            after = []
            if not args.quick:
                say("reference again")
                after = [
                    await reference.measure(dsn, n, plan.reference_seconds, cpus) for n in (1, 32)
                ]
        finally:
            await engine.dispose()
            await admin.close()
    results["reference"] = summarize_reference(before, after)
    results["targets"] = targets(results)
    results["finished_at"] = datetime.now(UTC).isoformat()
    return results


def service_variants(engine: Any) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """Service-layer entry points to measure: name -> allocate(request)."""
    variants: dict[str, Callable[[Any], Awaitable[Any]]] = {}
    variants["service layer, group commit"] = AllocationBatcher(engine).allocate
    variants["service layer, one per transaction"] = lambda r: allocations.allocate_one(engine, r)
    return variants


async def measure_size(dsn: str, plan: Plan) -> dict[str, Any]:
    engine = create_engine(dsn, Settings(database_url=dsn, pool_size=plan.pool_size))
    admin = await asyncpg.connect(dsn)
    try:
        await migration.upgrade(engine)
        allocate = next(iter(service_variants(engine).values()))
        return await scenarios.database_size(engine, admin, allocate, plan.size_allocations, 32)
    finally:
        await admin.close()
        await engine.dispose()


def summarize_reference(
    before: list[reference.Reference], after: list[reference.Reference]
) -> dict[str, Any]:
    """The reference figures: each measured at the start and (unless quick) at the end; ratios
    use the mean of the two."""
    tps, p50 = {}, {}
    for b, a in zip(before, after or before, strict=True):
        tps[str(b.clients)] = (b.tps + a.tps) / 2
        p50[str(b.clients)] = (b.p50_ms + a.p50_ms) / 2
    return {
        "tool": before[0].tool,
        "tps": tps,
        "p50_ms": p50,
        "before": [r.figures() for r in before],
        "after": [r.figures() for r in after],
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    ref = results["reference"]
    main = next(iter(results["throughput"].values()))
    at32 = next(r for r in main if r["clients"] == 32)
    best32 = max(
        (next(r for r in rows if r["clients"] == 32) for name, rows in results["throughput"].items()
         if name.startswith("HTTP")),
        key=lambda r: r["per_second"],
    )  # fmt: skip
    single = results["latency"]["HTTP, 1 client, closed loop"]
    flat = results["flat_cost"]
    empty16, full16 = flat["/16 at 0.0% fill"], flat["/16 at 99.9% fill"]
    v6, v4 = flat["empty IPv6 /64"], flat["empty /24"]
    feed = results["event_delivery"]
    rows = [
        ("HTTP allocations/s at 32 clients (1 process) vs pgbench TPS at 32",
         at32["per_second"], ref["tps"]["32"], ">= 0.5", lambda r: r >= 0.5, "/s"),
        ("HTTP allocations/s at 32 clients (best configuration) vs pgbench TPS at 32",
         best32["per_second"], ref["tps"]["32"], ">= 0.5", lambda r: r >= 0.5, "/s"),
        ("single-client HTTP allocation p50 vs pgbench single-client p50",
         single["p50_ms"], ref["p50_ms"]["1"], "<= 2", lambda r: r <= 2, " ms"),
        ("p50 on a /16 at 99.9% fill vs at 0% fill",
         full16["p50_ms"], empty16["p50_ms"], "<= 1.5", lambda r: r <= 1.5, " ms"),
        ("p50 on an IPv6 /64 vs an empty /24",
         v6["p50_ms"], v4["p50_ms"], "<= 1.5", lambda r: r <= 1.5, " ms"),
    ]  # fmt: skip
    out = []
    for name, value, ref_value, goal, check, unit in rows:
        r = report.ratio(value, ref_value)
        out.append({
            "name": name, "value": value, "reference": ref_value, "ratio": r, "goal": goal,
            "met": bool(check(r)), "measured": f"{value:,.3g}{unit} vs {ref_value:,.3g}{unit}",
        })  # fmt: skip
    p99 = feed.get("p99_ms_500") if isinstance(feed, dict) else None
    out.append({
        "name": "event delivery p99 with 500 watchers on one server process",
        "value": p99, "reference": 50.0, "ratio": (p99 / 50) if p99 is not None else float("nan"),
        "goal": "<= 50 ms", "met": (p99 <= 50) if p99 is not None else None,
        "measured": f"{p99:.1f} ms" if p99 is not None else "pending",
    })  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run of under a minute")
    parser.add_argument(
        "--database-url",
        help=f"Postgres server to use (default ${database.ENV},"
        " else an embedded Postgres); a fresh database is created and dropped",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="directory of the results")
    parser.add_argument("--docs", action="store_true", help="also copy the charts to docs/")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json-only", action="store_true", help="no progress or table")
    args = parser.parse_args()
    began = time.perf_counter()
    results = asyncio.run(run(args))
    results["wall_seconds"] = round(time.perf_counter() - began, 1)
    args.output.mkdir(parents=True, exist_ok=True)
    report.write_json(results, args.output / "results.json")
    charts = report.draw_charts(results, args.output)
    if args.docs:
        DOCS.mkdir(exist_ok=True)
        for chart in charts:
            shutil.copy(chart, DOCS / chart.name)
    if not args.json_only:
        report.print_report(results)
        print(f"results: {args.output / 'results.json'}, charts: {', '.join(map(str, charts))}")
        print(f"took {results['wall_seconds']} s")


if __name__ == "__main__":
    main()
