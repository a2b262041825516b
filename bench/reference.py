"""The reference: how fast this Postgres commits a one-row UPDATE.

``pgbench`` with a custom script (``\\set id random(1, N)`` then ``UPDATE ... WHERE id = :id``), one
transaction per statement. Without pgbench on PATH, an asyncpg loop does the same.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

ROWS = 10_000
SCRIPT = f"\\set id random(1, {ROWS})\nUPDATE bench_row SET value = value + 1 WHERE id = :id;\n"


@dataclass
class Reference:
    clients: int
    tps: float
    latency_ms: list[float] = field(default_factory=list, repr=False)
    tool: str = "pgbench"

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latency_ms) if self.latency_ms else float("nan")

    def figures(self) -> dict[str, float | int | str]:
        return {"clients": self.clients, "tps": self.tps, "p50_ms": self.p50_ms, "tool": self.tool}


async def prepare(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS bench_row (id integer PRIMARY KEY, value bigint NOT NULL);"
            f" INSERT INTO bench_row SELECT n, 0 FROM generate_series(1, {ROWS}) n"
            " ON CONFLICT DO NOTHING"
        )
    finally:
        await connection.close()


async def measure(dsn: str, clients: int, seconds: float, cpus: int) -> Reference:
    """Return the one-row-update TPS at ``clients`` (and per-transaction latencies)."""
    await prepare(dsn)
    if shutil.which("pgbench"):
        return await asyncio.to_thread(_pgbench, dsn, clients, seconds, cpus)
    return await _asyncpg_loop(dsn, clients, seconds)


def _pgbench(dsn: str, clients: int, seconds: float, cpus: int) -> Reference:
    with tempfile.TemporaryDirectory(prefix="allocator-pgbench-") as work:
        script = Path(work) / "update.sql"
        script.write_text(SCRIPT)
        command = [
            "pgbench", "-n", "-M", "prepared", "-f", str(script),
            "-c", str(clients), "-j", str(min(clients, cpus)), "-T", str(max(1, round(seconds))),
            "-l", "--log-prefix", str(Path(work) / "log"), dsn,
        ]  # fmt: skip
        for attempt in range(10):
            done = subprocess.run(command, capture_output=True, text=True)
            # A Postgres shared with other work may be out of connections for a moment.
            if done.returncode == 0 or "too many clients" not in done.stderr or attempt == 9:
                break
            time.sleep(1)
        if done.returncode != 0:
            raise RuntimeError(f"pgbench failed: {done.stderr[-2000:]}")
        tps = re.search(r"tps = ([\d.]+)", done.stdout)
        if tps is None:
            raise RuntimeError(f"pgbench printed no tps: {done.stdout}{done.stderr}")
        latency = [
            int(line.split()[2]) / 1000
            for log in Path(work).glob("log*")
            for line in log.read_text().splitlines()
        ]
    return Reference(clients, float(tps.group(1)), latency)


async def _asyncpg_loop(dsn: str, clients: int, seconds: float) -> Reference:
    latency: list[float] = []
    count = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal count
        connection = await asyncpg.connect(dsn)
        statement = await connection.prepare("UPDATE bench_row SET value = value + 1 WHERE id = $1")
        try:
            while (start := time.perf_counter()) < deadline:
                await statement.fetch(random.randint(1, ROWS))
                latency.append((time.perf_counter() - start) * 1000)
                count += 1
        finally:
            await connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Reference(clients, count / (time.perf_counter() - began), latency, "asyncpg")
