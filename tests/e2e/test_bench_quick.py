"""The benchmark suite's quick mode, end to end: it runs and reports every figure.

It asserts nothing about speed (the machine running the tests may be slow or busy): only that
each figure was measured and written, with its reference and the charts.
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

THROUGHPUT_PATHS = {
    "HTTP, 1 process",
    "HTTP, 1 process, group commit off",
    "HTTP, 2 processes",
    "service layer, group commit",
    "service layer, one per transaction",
}
FLAT_COST = {
    "empty /24",
    "/16 at 0.0% fill",
    "/16 at 50.0% fill",
    "/16 at 90.0% fill",
    "/16 at 99.0% fill",
    "/16 at 99.9% fill",
    "empty /12",
    "empty IPv6 /64",
}


def measured(value: object) -> bool:
    return isinstance(value, int | float) and not math.isnan(value) and value > 0


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    output = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "bench", "--quick", "--json-only", "--output", str(output)]
    if url := os.environ.get("ALLOCATOR_TEST_DATABASE_URL"):
        command += ["--database-url", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for chart in ("bench-throughput.png", "bench-fill.png"):
        assert (output / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return orjson.loads(Path(output / "results.json").read_bytes())


def test_machine_and_reference(results: dict) -> None:
    machine = results["machine"]
    assert machine["cpu_count"] >= 1 and machine["postgres"].startswith("PostgreSQL")
    assert machine["python"] and machine["cpu_model"]
    reference = results["reference"]
    assert all(measured(reference["tps"][n]) for n in ("1", "32"))
    assert measured(reference["p50_ms"]["1"])


def test_throughput_of_every_path_at_every_client_count(results: dict) -> None:
    assert set(results["throughput"]) == THROUGHPUT_PATHS
    for rows in results["throughput"].values():
        assert [r["clients"] for r in rows] == [1, 8, 32, 64]
        for row in rows:
            assert measured(row["per_second"]) and row["errors"] == 0
            assert measured(row["p50_ms"]) and measured(row["load_cpu_seconds"])


def test_latency_flat_cost_fill_size_and_delivery(results: dict) -> None:
    for row in results["latency"].values():
        assert all(measured(row[k]) for k in ("p50_ms", "p99_ms", "p999_ms"))
    assert set(results["flat_cost"]) == FLAT_COST
    for row in results["flat_cost"].values():
        assert measured(row["p50_ms"]) and row["count"] > 0
    assert results["flat_cost"]["/16 at 99.9% fill"]["held"] == round(65534 * 0.999)
    fill = results["fill_time"]
    assert fill["addresses"] == 1022 and measured(fill["seconds"])
    size = results["database_size"]
    assert size["allocations"] == 2000 and measured(size["bytes_per_allocation"])
    delivery = results["event_delivery"]
    assert all(measured(delivery[f"p99_ms_{n}"]) for n in (1, 100, 500))


def test_every_target_has_a_ratio(results: dict) -> None:
    assert len(results["targets"]) == 6
    for target in results["targets"]:
        assert measured(target["ratio"]) and isinstance(target["met"], bool), target
