"""The feed under duress: stalled readers, a dead LISTEN connection, replicas, random disconnects."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import netaddr
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.client.watch import AsyncWatch, Backoff, Cursor
from allocator.domain.range import ServiceRange
from allocator.store import ranges
from allocator.store.listener import APPLICATION_NAME
from tests.e2e.feed import allocations_table, database_log, head, watching
from tests.e2e.server import running_server

PADDING = "x" * 15_000  # metadata near its limit: a few hundred events fill any socket buffer


def stalled_watch(base: str, since: int) -> socket.socket:
    """Open a watch and never read it (a small receive buffer, so the server's writes block)."""
    address = urlsplit(base)
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect((address.hostname, address.port))
    reader.sendall(f"GET /v1/watch?since={since} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return reader


def read_to_end(reader: socket.socket, within: float) -> bytes:
    reader.settimeout(within)
    received = bytearray()
    while chunk := reader.recv(1 << 20):
        received += chunk
    return bytes(received)


async def test_a_stalled_reader_is_cut_off_and_the_others_are_served(
    engine: AsyncEngine, database_url: str
) -> None:
    env = {"ALLOCATOR_WATCH_QUEUE": "20", "ALLOCATOR_WATCH_SEND_TIMEOUT_SECONDS": "1"}
    writes = 400
    with running_server(database_url, **env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            await http.post("/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/22"})
            stalled = stalled_watch(base, since=1)
            async with watching(base, since=1) as healthy:
                await healthy.live()
                started = time.monotonic()
                reading = asyncio.create_task(healthy.until(writes + 1, within=60))
                for n in range(writes):
                    response = await http.post(
                        "/v1/allocations", json={"owner": f"o{n}", "metadata": {"pad": PADDING}}
                    )
                    assert response.status_code == 201, response.text
                received = await reading
                assert [e["revision"] for e in received] == list(range(2, writes + 2))
                served_in = time.monotonic() - started
        # The stalled reader was dropped: its stream ends (after what the buffers held) well
        # short of the feed, rather than the server keeping it, and its events, forever.
        body = await asyncio.to_thread(read_to_end, stalled, 30)
        stalled.close()
        revisions = [orjson.loads(line)["revision"] for line in _ndjson_lines(body)]
        assert revisions, "it got the start of the feed"
        assert max(revisions) < writes + 1, "but not all of it"
        assert served_in < 60


def _ndjson_lines(http_body: bytes) -> list[bytes]:
    """The complete JSON lines of a chunked HTTP response, however it was cut."""
    _, _, chunked = http_body.partition(b"\r\n\r\n")
    lines = []
    for line in chunked.split(b"\n"):
        start = line.find(b"{")
        if start >= 0:
            candidate = line[start:].rstrip(b"\r")
            try:
                orjson.loads(candidate)
            except orjson.JSONDecodeError:
                continue
            lines.append(candidate)
    return lines


async def test_events_still_flow_when_the_listen_connection_is_killed(
    engine: AsyncEngine, database_url: str
) -> None:
    find = text(
        "SELECT pid FROM pg_stat_activity WHERE application_name = :name"
        " AND datname = current_database()"
    )
    env = {"ALLOCATOR_FEED_POLL_INTERVAL": "0.5"}
    with running_server(database_url, **env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            await http.post("/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/24"})
            async with watching(base, since=1) as stream:
                await stream.live()
                async with engine.connect() as connection:
                    listeners = (await connection.execute(find, {"name": APPLICATION_NAME})).all()
                    assert len(listeners) == 1
                    killed = listeners[0].pid
                    await connection.execute(
                        text("SELECT pg_terminate_backend(:pid)"), {"pid": killed}
                    )
                for n in range(3):
                    allocated = (await http.post("/v1/allocations", json={"owner": f"o{n}"})).json()
                    started = time.monotonic()
                    events = await stream.until(allocated["revision"])
                    assert events[-1]["allocation"] == allocated
                    assert time.monotonic() - started < 5, "within a few poll intervals"
                async with asyncio.timeout(20):  # and it listens again
                    while True:
                        async with engine.connect() as connection:
                            pids = (
                                await connection.execute(find, {"name": APPLICATION_NAME})
                            ).all()
                        if pids and pids[0].pid != killed:
                            break
                        await asyncio.sleep(0.2)


SOAK_SECONDS = float(os.environ.get("ALLOCATOR_SOAK_SECONDS", "4"))


async def soak(engine: AsyncEngine, database_url: str, seconds: float) -> None:
    """Writers (some rolling back after taking a revision) against two replicas, and watchers
    that drop their connection at random and resume on either replica."""
    with running_server(database_url) as one, running_server(database_url) as two:
        servers = [one, two]
        async with httpx.AsyncClient(timeout=30) as http:
            await http.post(f"{one}/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/22"})
            stop = asyncio.Event()

            async def writer(n: int) -> None:
                held: list[str] = []
                i = 0
                while not stop.is_set():
                    base = random.choice(servers)
                    if held and random.random() < 0.4:
                        ip = held.pop(random.randrange(len(held)))
                        assert (await http.delete(f"{base}/v1/allocations/{ip}")).status_code == 204
                    else:
                        response = await http.post(
                            f"{base}/v1/allocations", json={"owner": f"w{n}-{i}"}
                        )
                        held.append(response.json()["ip"])
                    i += 1
                    await asyncio.sleep(random.uniform(0, 0.02))

            async def rollback_writer() -> None:
                n = 0
                while not stop.is_set():
                    async with engine.connect() as connection:
                        await connection.begin()
                        geometry = ServiceRange.of(netaddr.IPNetwork("10.200.0.0/24"))
                        await ranges.add(connection, f"never-{n}", geometry, datetime.now(UTC))
                        await asyncio.sleep(random.uniform(0, 0.03))
                        await connection.rollback()
                    n += 1
                    await asyncio.sleep(random.uniform(0, 0.05))

            final: list[int] = []

            async def watcher() -> tuple[int, list[dict[str, object]], Cursor]:
                cursor = Cursor()
                listed_at = -1
                live: list[dict[str, object]] = []
                while not final or (cursor.revision or 0) < final[0]:
                    watch = AsyncWatch(
                        random.choice(servers), cursor=cursor, backoff=Backoff(first=0.05, cap=0.5)
                    )
                    budget = random.randint(1, 40)
                    async for event in watch:
                        if event.get("initial_end"):
                            assert listed_at == -1, "listed only once: nothing was compacted"
                            listed_at = event["revision"]
                        elif listed_at >= 0 and event["type"] != "BOOKMARK":
                            live.append(dict(event))
                        budget -= 1
                        if budget == 0 or (final and (cursor.revision or 0) >= final[0]):
                            break
                    await watch.aclose()
                return listed_at, live, cursor

            writers = [asyncio.create_task(writer(n)) for n in range(4)]
            writers.append(asyncio.create_task(rollback_writer()))
            watchers = [asyncio.create_task(watcher()) for _ in range(4)]
            await asyncio.sleep(seconds)
            stop.set()
            await asyncio.gather(*writers)
            final.append(await head(engine))
            results = await asyncio.wait_for(asyncio.gather(*watchers), 60)
    table = await allocations_table(engine)
    assert final[0] > 20, "the soak wrote something"
    for listed_at, live, cursor in results:
        expected = await database_log(engine, listed_at)
        assert [e["revision"] for e in live] == list(range(listed_at + 1, final[0] + 1))
        assert live == expected, "the watcher's sequence is the log, exactly"
        state = {ip: allocation["owner"] for ip, allocation in cursor.state.allocations.items()}
        assert state == table


async def test_soak_watchers_over_two_replicas_see_the_log_exactly(
    engine: AsyncEngine, database_url: str
) -> None:
    await soak(engine, database_url, SOAK_SECONDS)


@pytest.mark.slow
async def test_long_soak(engine: AsyncEngine, database_url: str) -> None:
    await soak(engine, database_url, 90)


async def test_a_restarted_server_serves_a_resumed_watch_from_the_database(
    engine: AsyncEngine, database_url: str
) -> None:
    """A small memory window, so a resume reads the database first and then joins the live
    stream; and a server that stops ends its streams instead of waiting for them."""
    env = {"ALLOCATOR_FEED_WINDOW": "5"}
    with running_server(database_url, **env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            await http.post("/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/24"})
            watch = AsyncWatch(base, backoff=Backoff(first=0.05, cap=0.2))
            async with asyncio.timeout(20):
                async for event in watch:
                    if event.get("initial_end"):
                        break
            for n in range(20):
                await http.post("/v1/allocations", json={"owner": f"before-{n}"})
        stopping = time.monotonic()
        # (the server process is stopped here, with the watch's connection still open)
    assert time.monotonic() - stopping < 8, "stopping did not wait for the watcher"
    await watch.aclose()
    async with engine.connect() as connection:  # written while no server runs
        geometry = ServiceRange.of(netaddr.IPNetwork("10.2.0.0/24"))
        await connection.begin()
        await ranges.add(connection, "offline", geometry, datetime.now(UTC))
        await connection.commit()
    with running_server(database_url, **env) as restarted:
        async with httpx.AsyncClient(base_url=restarted, timeout=30) as http:
            resumed = AsyncWatch(restarted, cursor=watch.cursor)
            seen: list[dict[str, object]] = []
            writer = asyncio.gather(
                *(http.post("/v1/allocations", json={"owner": f"after-{n}"}) for n in range(10))
            )
            async with asyncio.timeout(30):
                async for event in resumed:
                    if event["type"] != "BOOKMARK":
                        seen.append(dict(event))
                    if writer.done() and (resumed.cursor.revision or 0) >= await head(engine):
                        break
            await writer
            await resumed.aclose()
    assert seen == await database_log(engine, 1), "every event after the list, once, in order"
    assert {ip: a["owner"] for ip, a in resumed.state.allocations.items()} == (
        await allocations_table(engine)
    )
    assert set(resumed.state.ranges) == {"r", "offline"}
