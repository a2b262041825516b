"""``allocator serve`` with ALLOCATOR_LOG_FORMAT=json writes one JSON object per line: the request
line and the change line of an allocation carry the caller's request id."""

import json
import os
import subprocess
import sys
import tempfile
import time

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.server import free_port


def test_json_log_lines_of_a_real_server(engine: AsyncEngine, database_url: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "allocator", "serve", "--port", str(port)],
            env={
                **os.environ,
                "ALLOCATOR_DATABASE_URL": database_url,
                "ALLOCATOR_LOG_FORMAT": "json",
                "ALLOCATOR_DEFAULT_RANGES": "logged=10.7.0.0/24",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, "the server exited"
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "not ready in 30 s"
                time.sleep(0.1)
            response = httpx.post(
                f"{url}/v1/allocations",
                json={"owner": "default/web"},
                headers={"X-Request-ID": "e2e-7"},
            )
            assert response.headers["x-request-id"] == "e2e-7"
        finally:
            process.terminate()
            process.wait(10)
        log.seek(0)
        output = log.read().decode()
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert records, output
    mine = [r for r in records if r.get("request_id") == "e2e-7"]
    change = next(r for r in mine if r["logger"] == "allocator.change")
    allocation = response.json()
    assert (change["owner"], change["ip"], change["range"], change["revision"]) == (
        "default/web",
        allocation["ip"],
        "logged",
        allocation["revision"],
    )
    request = next(r for r in mine if r["logger"] == "allocator.request")
    assert (request["status"], request["route"], request["method"]) == (
        201,
        "/v1/allocations",
        "POST",
    )
    assert request["duration_ms"] > 0
    assert any(r["logger"].startswith("uvicorn") for r in records), "uvicorn's lines are JSON too"
