"""The floor of a request's cost: a bare FastAPI app that parses an allocation's JSON body with the
API's own pydantic model and answers an Allocation-shaped document, touching no database.

Served as ``allocator serve`` serves the API (uvicorn, one process, the same loop, HTTP parser and
logging), so the CPU it spends per request is what the framework alone costs:

    python -m bench.bare_app --port 8081
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from fastapi import FastAPI
from starlette.responses import Response

from allocator.api.logs import logging_config
from allocator.api.schemas import AllocationCreate
from bench import server


def create_app() -> FastAPI:
    app = FastAPI(title="bare")

    @app.post("/v1/allocations", status_code=201)
    async def allocate(body: AllocationCreate) -> Response:
        document = {
            "ip": body.ip or "10.0.0.1",
            "family": body.family or "IPv4",
            "range": body.range or "default",
            "owner": body.owner,
            "metadata": body.metadata,
            "created_at": "2024-01-01T00:00:00.000000Z",
            "revision": 1,
        }
        return Response(orjson.dumps(document), 201, media_type="application/json")

    @app.get("/readyz")
    async def ready() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app


@contextmanager
def running() -> Iterator[server.Server]:
    """Start the bare app on a free loopback port; yield it once ready; stop it afterwards."""
    port = server.free_port()
    with server.spawned([sys.executable, "-m", "bench.bare_app", "--port", str(port)], port) as app:
        yield app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8081)
    port = parser.parse_args().port
    # The arguments ``allocator serve`` gives uvicorn, at the bench's log level.
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        log_config=logging_config("warning", "text"),
    )


if __name__ == "__main__":
    main()
