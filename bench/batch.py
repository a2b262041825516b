"""Allocations per second through ``POST /v1/allocations:batch`` at 1,000 requests per call."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from bench.http_client import Connection
from bench.load import percentile

PER_CALL = 1000
CLIENTS = 2
"""Connections sending batches at once: one batch is parsed while the other is written."""


async def measure(base_url: str, range_name: str, calls: int) -> dict[str, Any]:
    """Send ``calls`` atomic batches of 1,000 dynamic allocations from ``range_name``, from
    ``CLIENTS`` connections; return allocations per second and the time of one call."""
    connections = [await Connection.open(base_url) for _ in range(CLIENTS)]
    took: list[float] = []

    async def client(c: int) -> None:
        for n in range(c, calls, CLIENTS):
            requests = [{"owner": f"batch-{n}-{k}", "range": range_name} for k in range(PER_CALL)]
            body = orjson.dumps({"requests": requests})
            began = time.perf_counter()
            status, content = await connections[c].request("POST", "/v1/allocations:batch", body)
            took.append(time.perf_counter() - began)
            if status != 200:
                raise RuntimeError(f"batch answered {status}: {content[:200]!r}")

    try:
        await client(0)  # warm-up: the first call prepares its statements
        took.clear()
        began = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(CLIENTS)))
        elapsed = time.perf_counter() - began
    finally:
        for connection in connections:
            await connection.close()
    return {
        "per_second": round(PER_CALL * len(took) / elapsed, 1),
        "calls": len(took),
        "per_call": PER_CALL,
        "clients": CLIENTS,
        "call_p50_ms": round(percentile([t * 1000 for t in took], 0.5), 1),
    }
