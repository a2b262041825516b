"""The benchmark suite's quick mode, end to end: it runs and reports every figure.

It asserts nothing about speed (the machine running the tests may be slow or busy): only that
each figure was measured and written, with its reference and the charts. It needs the ``[bench]``
extra (the charts' and the CPU figures' libraries) and is skipped without it:
``pip install -e '.[bench]' && pytest -m bench``.
"""

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from allocator.domain.address import parse_network
from allocator.domain.range import ServiceRange

pytestmark = pytest.mark.bench
for library in ("matplotlib", "psutil"):
    pytest.importorskip(library, reason="the benchmarks need the [bench] extra")

THROUGHPUT_PATHS = {
    "HTTP, 1 process",
    "HTTP, 1 process, group commit off",
    "HTTP, 2 processes",
    "service layer, Allocator (grouped)",
    "service layer, Allocator(max_group=1)",
}
HTTP_PATHS = {p for p in THROUGHPUT_PATHS if p.startswith("HTTP")}
WRITES = ("dynamic allocation", "release", "static allocation")
READS = ("GET /v1/ranges/{name}", "GET /healthz")
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
    assert all(measured(delivery[f"p99_ms_{n}"]) for n in (1, 100, 500)), delivery
    assert all(measured(delivery[f"cpu_us_{n}"]) for n in (1, 100, 500)), delivery
    assert measured(delivery["cluster"]["server_cores"]), delivery


def test_churn_at_32_connections_on_every_http_path(results: dict) -> None:
    assert set(results["churn"]) == HTTP_PATHS
    for row in results["churn"].values():
        assert row["clients"] == 32 and row["errors"] == 0
        assert measured(row["per_second"]) and measured(row["p50_ms"])


def test_cpu_per_request_next_to_its_references(results: dict) -> None:
    figures = results["cpu"]
    assert figures["rounds"] == 2 and figures["requests_per_round"] > 0
    server = figures["server_ms"]
    assert set(server) == {*WRITES, *READS, "bare FastAPI POST (same body)"}
    assert all(measured(ms) for ms in server.values()), server
    # Postgres runs on the machine of the tests, so the backends were read.
    backend = figures["backend"]["ms"]
    assert all(measured(backend[k]) for k in (*WRITES, "one-row UPDATE transaction")), backend
    assert all(math.isfinite(backend[k]) and backend[k] >= 0 for k in READS), backend


def test_one_round_trip_per_operation(results: dict) -> None:
    trips = results["round_trips"]
    assert set(trips) == {*WRITES, "GET /v1/ranges/{name}"}
    for row in trips.values():
        assert row["samples"] == 5
        # Counted on the wire: every request reaches Postgres at least once.
        assert row["request"] >= 1 and row["statements"] >= 1
        assert math.isfinite(row["other"]) and row["other"] >= 0


def test_latency_by_number_of_ranges(results: dict) -> None:
    count = results["range_count"]
    assert count["ranges"] == 1000 and measured(count["setup_seconds"])
    cases = {f"{n}, naming {what}" for n in ("1 range", "1000 ranges") for what in ("it", "none")}
    assert set(count["latency"]) == cases
    for row in count["latency"].values():
        assert measured(row["p50_ms"]) and row["count"] > 0


def test_every_target_has_a_ratio(results: dict) -> None:
    names = [t["name"] for t in results["targets"]]
    assert len(names) == len(set(names)) == 19
    assert [t for t in results["targets"] if t["met"] is None] == []
    batch = results["batch"]
    assert measured(batch["per_second"]) and measured(batch["single_per_second"])
    assert batch["calls"] >= 3 and batch["per_call"] == 1000
    for target in results["targets"]:
        if target["met"] is not None:
            assert measured(target["ratio"]) and isinstance(target["met"], bool), target


def test_fill_takes_the_dynamic_band_first() -> None:
    """The fill levels measured are those the allocator itself reaches: the static band only
    takes what the dynamic band cannot hold."""
    from bench.database import fill_offsets

    geometry = ServiceRange.of(parse_network("10.33.0.0/16"))
    dynamic, static = geometry.dynamic_band, geometry.static_band
    offsets = fill_offsets(geometry, 0.999, random.Random(1))
    assert len(offsets) == len(set(offsets)) == round(65534 * 0.999)
    assert set(range(dynamic.first, dynamic.last + 1)) <= set(offsets)
    assert sum(1 for o in offsets if static.contains(o)) == len(offsets) - dynamic.size
    half = fill_offsets(geometry, 0.5, random.Random(1))
    assert not any(static.contains(o) for o in half)


def test_resize_figures(results: dict) -> None:
    resize = results["resize"]
    cases = [row for name, row in resize.items() if name != "clients"]
    assert len(cases) == 2
    for row in cases:
        assert measured(row["resize_ms"]) and measured(row["waited_max_ms"])
        assert row["waiting_allocations"] > 0, "allocations overlapped the resize"
    assert [row["cidr"] for row in cases] == ["10.80.0.0/19", "fd00:80::/100"]
