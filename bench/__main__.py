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

from allocator.service import ranges
from allocator.service.allocator import Allocator
from allocator.settings import Settings
from allocator.store import migration
from allocator.store.database import create_engine, create_pool
from bench import (
    bare_app,
    batch,
    cpu,
    database,
    feed,
    many_ranges,
    reference,
    report,
    resize,
    round_trips,
    scenarios,
    server,
)

RESULTS = Path(__file__).parent / "results"
DOCS = Path(__file__).parent.parent / "docs"
CLIENTS = [1, 8, 32, 64]


CPU_RANGE = ("cpu", "10.64.0.0/16")
"""The range of the CPU and round-trip figures (no other range of the run overlaps it)."""


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
    cpu_requests: int
    """Sequential requests per round of the CPU figures: CPU times come in 10 ms ticks."""
    cpu_rounds: int
    round_trip_samples: int
    ranges_count: int
    batch_calls: int
    """Batches of 1,000 allocations sent for the batch figure."""

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(0.4, 0.15, 1, 1.0, 30, "10.34.0.0/22", 2_000, 8, 200, 2, 5, 1_000, 4)
        return cls(
            3.0, 0.5, 4, 5.0, 400, "10.34.0.0/16", 100_000, Settings().pool_size, 1_000, 5, 20,
            1_000, 30,
        )  # fmt: skip


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
        pool = await create_pool(dsn, settings)
        try:
            await migration.upgrade(engine)
            version = await admin.fetchval("SELECT version()")
            results["machine"] = report.describe_machine(version)
            cpus = results["machine"]["cpu_count"] or 1
            began = time.perf_counter()

            def say(what: str) -> None:
                if not args.json_only:
                    print(f"[{time.perf_counter() - began:5.1f} s] {what}", flush=True)

            say("reference: pgbench one-row UPDATE at 1 and 32 clients")
            before = [
                await reference.measure(dsn, n, plan.reference_seconds, cpus) for n in (1, 32)
            ]

            await ranges.create_range(engine, "throughput", "10.0.0.0/12")
            await ranges.create_range(engine, *CPU_RANGE)

            async def reset() -> None:
                await database.release_all(admin, "throughput")

            throughput: dict[str, list[dict[str, Any]]] = {}
            churn: dict[str, dict[str, Any]] = {}
            variants = http_variants()
            main_name = next(iter(variants))
            for name, (workers, env) in variants.items():
                say(f"throughput: {name}")
                pool_env = {"ALLOCATOR_POOL_SIZE": str(plan.pool_size)}
                with server.running(dsn, workers, **pool_env, **env) as srv:
                    clients = scenarios.HttpClients(srv.url)
                    try:
                        throughput[name] = await scenarios.throughput(
                            lambda tag, c=clients: scenarios.http_allocation(c, "throughput", tag),
                            reset, CLIENTS, plan.seconds, plan.warmup, srv.cpu_seconds,
                            clients.close,  # the server closes connections idle for 5 s
                        )  # fmt: skip
                        say(f"churn: {name}, 32 connections")
                        churn[name] = await scenarios.churn(
                            clients, "throughput", 32, plan.seconds, plan.warmup, srv.cpu_seconds
                        )
                        await reset()
                        await clients.close()
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
                        await clients.close()
                        await engine.dispose()  # idle, but out of the backends measured next
                        say("CPU per request: server and its Postgres backends, interleaved")
                        with bare_app.running() as bare:
                            results["cpu"] = await cpu.measure(
                                srv, bare, admin, dsn, *CPU_RANGE, plan.cpu_requests,
                                plan.cpu_rounds,
                            )  # fmt: skip
                    finally:
                        await clients.close()
            results["churn"] = churn

            say("round trips per operation")
            results["round_trips"] = await measure_round_trips(dsn, plan)

            for name, allocate in service_variants(pool).items():
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

            say(f"ranges: 1 and {plan.ranges_count:,}")
            results["range_count"] = await many_ranges.measure(
                base, plan.ranges_count, plan.samples, plan.pool_size, rng
            )

            say("batch: 1,000 allocations per call")
            results["batch"] = await batch_figures(dsn, plan, throughput[main_name])
            await reset()

            say("resize: a grow of a range holding many allocations, with allocations meanwhile")
            results["resize"] = await resize.measure(base, args.quick, plan.pool_size)

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
            await pool.close()
            await engine.dispose()
            await admin.close()
    results["reference"] = summarize_reference(before, after)
    results["targets"] = targets(results)
    results["finished_at"] = datetime.now(UTC).isoformat()
    return results


def service_variants(pool: Any) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """Service-layer entry points to measure: name -> allocate(request)."""
    return {
        "service layer, Allocator (grouped)": Allocator(pool).allocate,
        "service layer, Allocator(max_group=1)": Allocator(pool, max_group=1).allocate,
    }


async def measure_round_trips(dsn: str, plan: Plan) -> dict[str, Any]:
    """Round trips per operation of a server whose connections pass through a counting proxy.
    Its feed polls rarely, so what it reads is what the writes cause."""
    proxy = round_trips.Proxy(dsn)
    try:
        proxied = proxy.start()
        env = {"ALLOCATOR_POOL_SIZE": "4", "ALLOCATOR_FEED_POLL_INTERVAL": "10"}
        with server.running(proxied, 1, **env) as srv:
            return await round_trips.measure(proxy, srv.url, *CPU_RANGE, plan.round_trip_samples)
    finally:
        proxy.close()


async def batch_figures(dsn: str, plan: Plan, single: list[dict[str, Any]]) -> dict[str, Any]:
    """Allocations/s through ``POST /v1/allocations:batch`` at 1,000 per call on one server
    process, next to single requests at 32 connections (``single``: that process's throughput,
    measured earlier in the run)."""
    env = {"ALLOCATOR_POOL_SIZE": str(plan.pool_size)}
    with server.running(dsn, 1, **env) as srv:
        figures = await batch.measure(srv.url, "throughput", plan.batch_calls)
    at_32 = next(r for r in single if r["clients"] == 32)
    return {**figures, "single_per_second": at_32["per_second"]}


async def measure_size(dsn: str, plan: Plan) -> dict[str, Any]:
    settings = Settings(database_url=dsn, pool_size=plan.pool_size)
    engine = create_engine(dsn, settings)
    pool = await create_pool(dsn, settings)
    admin = await asyncpg.connect(dsn)
    try:
        await migration.upgrade(engine)
        allocate = next(iter(service_variants(pool).values()))
        return await scenarios.database_size(engine, admin, allocate, plan.size_allocations, 32)
    finally:
        await admin.close()
        await pool.close()
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


@dataclass(frozen=True)
class Goal:
    """A bound on a ratio (``at_least`` or at most), and the stretch one."""

    bound: float
    stretch: float | None = None
    at_least: bool = False

    def met(self, ratio: float) -> bool:
        return ratio >= self.bound if self.at_least else ratio <= self.bound

    def stretch_met(self, ratio: float) -> bool | None:
        if self.stretch is None:
            return None
        return ratio >= self.stretch if self.at_least else ratio <= self.stretch

    def text(self) -> str:
        sign = ">=" if self.at_least else "<="
        stretch = f" (stretch {self.stretch:g})" if self.stretch is not None else ""
        return f"{sign} {self.bound:g}{stretch}"


RATE = Goal(0.3, 0.5, at_least=True)
SINGLE = Goal(4, 2)
SERVER_CPU = Goal(3, 2)
BACKEND_CPU = Goal(4, 3)
FLAT = Goal(1.5)
ONE_TRIP = Goal(1)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the run: value, reference, ratio, goal and whether it is met; a figure that
    was not measured (skipped, pending) is listed with ``met`` None."""
    ref = results["reference"]
    http = {k: v for k, v in results["throughput"].items() if k.startswith("HTTP")}
    at32 = {k: next(r for r in rows if r["clients"] == 32) for k, rows in http.items()}
    main = next(iter(at32))
    best = max(at32, key=lambda k: at32[k]["per_second"])
    churn = results["churn"]
    best_churn = max(churn, key=lambda k: churn[k]["per_second"])
    single = results["latency"]["HTTP, 1 client, closed loop"]
    flat = results["flat_cost"]
    cpu_ms = results["cpu"]["server_ms"]
    backend = results["cpu"]["backend"]
    count = results["range_count"]
    many = count["latency"]
    n = count["ranges"]
    trips = results["round_trips"]
    rows: list[tuple[str, float | None, float | None, Goal, str, str | None]] = [
        ("HTTP allocations/s at 32 clients (1 process) vs pgbench TPS at 32",
         at32[main]["per_second"], ref["tps"]["32"], RATE, "/s", None),
        (f"HTTP allocations/s at 32 clients (best: {best}) vs pgbench TPS at 32",
         at32[best]["per_second"], ref["tps"]["32"], RATE, "/s", None),
        ("churn requests/s at 32 connections (1 process) vs pgbench TPS at 32",
         churn[main]["per_second"], ref["tps"]["32"], RATE, "/s", None),
        (f"churn requests/s at 32 connections (best: {best_churn}) vs pgbench TPS at 32",
         churn[best_churn]["per_second"], ref["tps"]["32"], RATE, "/s", None),
        ("single-client HTTP allocation p50 vs pgbench single-client p50",
         single["p50_ms"], ref["p50_ms"]["1"], SINGLE, " ms", None),
    ]  # fmt: skip
    for kind in ("dynamic allocation", "release", "static allocation"):
        rows.append((
            f"server CPU per {kind} vs a bare FastAPI request",
            cpu_ms[kind], cpu_ms[cpu.BARE], SERVER_CPU, " ms", None,
        ))  # fmt: skip
    if "ms" in backend:
        value, ref_value, why = backend["ms"]["dynamic allocation"], backend["ms"][cpu.UPDATE], None
    else:
        value, ref_value, why = None, None, f"skipped: {backend['skipped']}"
    rows.append((
        "Postgres backend CPU per lone allocation vs a one-row UPDATE transaction",
        value, ref_value, BACKEND_CPU, " ms", why,
    ))  # fmt: skip
    for case in many_ranges.CASES:
        rows.append((
            f"allocation p50 {case}: {n:,} ranges vs 1",
            many[f"{n} ranges, {case}"]["p50_ms"], many[f"1 range, {case}"]["p50_ms"], FLAT,
            " ms", None,
        ))  # fmt: skip
    rows += [
        ("p50 on a /16 at 99.9% fill (dynamic band full) vs an empty /24",
         flat["/16 at 99.9% fill"]["p50_ms"], flat["empty /24"]["p50_ms"], FLAT, " ms", None),
        ("p50 on an IPv6 /64 vs an empty /24",
         flat["empty IPv6 /64"]["p50_ms"], flat["empty /24"]["p50_ms"], FLAT, " ms", None),
    ]  # fmt: skip
    for kind, figures in trips.items():
        rows.append((
            f"round trips to Postgres per {kind} (the request's own)",
            figures["request"], 1.0, ONE_TRIP, "", None,
        ))  # fmt: skip
    batch = results["batch"]
    rows.append((
        "allocations/s through POST /v1/allocations:batch (1,000 per call) vs single requests",
        batch.get("per_second"), batch.get("single_per_second"), Goal(1, at_least=True), "/s",
        None if "per_second" in batch else batch["status"],
    ))  # fmt: skip
    out = []
    for name, value, ref_value, goal, unit, why in rows:
        measured = value is not None and ref_value is not None
        r = report.ratio(value, ref_value) if value is not None and ref_value else float("nan")
        out.append({
            "name": name, "value": value, "reference": ref_value, "ratio": r,
            "goal": goal.text(), "met": goal.met(r) if measured else None,
            "stretch_met": goal.stretch_met(r) if measured else None,
            "measured": f"{value:,.3g}{unit} vs {ref_value:,.3g}{unit}" if measured else why,
        })  # fmt: skip
    feed = results["event_delivery"]
    p99 = feed.get("p99_ms_500") if isinstance(feed, dict) else None
    out.append({
        "name": "event delivery p99 with 500 watchers on one server process",
        "value": p99, "reference": 50.0, "ratio": (p99 / 50) if p99 is not None else float("nan"),
        "goal": "<= 50 ms", "met": (p99 <= 50) if p99 is not None else None, "stretch_met": None,
        "measured": f"{p99:.1f} ms" if p99 is not None else "pending",
    })  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
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
