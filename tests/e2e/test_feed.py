"""The event feed against real server processes: the contract, ordering hazards, compaction."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import netaddr
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.client.errors import ProblemError
from allocator.client.watch import AsyncWatch
from allocator.domain.range import ServiceRange
from allocator.domain.token import Role, new_token, record_for
from allocator.store import ranges
from allocator.store.token_file import append_record
from tests.e2e.feed import allocations_table, database_log, head, watching
from tests.e2e.server import running_server


async def test_watch_lists_then_streams_in_order_and_poll_agrees(
    engine: AsyncEngine, database_url: str
) -> None:
    with running_server(database_url) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            await http.post("/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/24"})
            first = (await http.post("/v1/allocations", json={"owner": "a"})).json()
            async with watching(base, initial="true") as listing, watching(base, since=0) as tail:
                snapshot = await listing.live()
                assert [e["type"] for e in snapshot] == ["RANGE_ADDED", "ALLOCATED", "BOOKMARK"]
                assert {e["revision"] for e in snapshot} == {2}
                assert snapshot[1]["allocation"] == first  # keeps its own revision
                assert snapshot[2]["initial_end"] is True
                assert [e["revision"] for e in await tail.live()] == [1, 2]
                await http.delete(f"/v1/allocations/{first['ip']}")
                second = (await http.post("/v1/allocations", json={"owner": "b"})).json()
                for stream in (listing, tail):
                    events = await stream.until(4)
                    assert [(e["type"], e["revision"]) for e in events] == [
                        ("RELEASED", 3),
                        ("ALLOCATED", 4),
                    ]
                    assert events[1]["allocation"] == second
            poll = (await http.get("/v1/events", params={"since": 1, "limit": 2})).json()
            assert poll["revision"] == 4
            assert [e["revision"] for e in poll["items"]] == [2, 3]
            assert poll["items"] == (await database_log(engine, 1))[:2]


async def test_server_sent_events_carry_the_revision_as_id_and_resume_from_last_event_id(
    engine: AsyncEngine, database_url: str
) -> None:
    with running_server(database_url) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for n in range(3):
                await http.post("/v1/ranges", json={"name": f"r{n}", "cidr": f"10.{n}.0.0/24"})
            headers = {"Accept": "text/event-stream", "Last-Event-ID": "1"}
            async with http.stream("GET", "/v1/watch", headers=headers) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                messages: list[tuple[str, dict[str, object]]] = []
                lines = response.aiter_lines()
                event_id = ""
                while len(messages) < 3:
                    line = await asyncio.wait_for(anext(lines), 20)
                    if line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("data: "):
                        messages.append((event_id, orjson.loads(line[6:])))
            assert [(i, e["type"], e["revision"]) for i, e in messages] == [
                ("2", "RANGE_ADDED", 2),
                ("3", "RANGE_ADDED", 3),
                ("3", "BOOKMARK", 3),
            ]


async def test_unservable_revisions_are_refused_before_the_stream(
    engine: AsyncEngine, database_url: str
) -> None:
    with running_server(database_url) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            await http.post("/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/24"})
            for path in ("/v1/watch", "/v1/events"):
                response = await http.get(path, params={"since": 5})
                assert response.status_code == 410
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["type"] == "revision-unknown"
            both = await http.get("/v1/watch", params={"since": 0, "initial": "true"})
            assert (both.status_code, both.json()["type"]) == (422, "invalid-request")


async def test_a_revision_taken_early_but_committed_late_is_delivered_in_order(
    engine: AsyncEngine, database_url: str
) -> None:
    """The gap hazard of a plain outbox: here the later writer waits for the earlier one."""
    with running_server(database_url) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            await http.post("/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/24"})
            async with watching(base, since=1) as stream:
                await stream.live()
                for n, outcome in enumerate(("commit", "rollback")):
                    before = await head(engine)
                    async with engine.connect() as held:
                        await held.begin()
                        geometry = ServiceRange.of(netaddr.IPNetwork(f"10.9.{n}.0/24"))
                        taken = await ranges.add(
                            held, f"held-{outcome}", geometry, datetime.now(UTC)
                        )
                        assert taken.revision == before + 1
                        later = asyncio.create_task(
                            http.post("/v1/allocations", json={"owner": f"late-{outcome}"})
                        )
                        # Nothing after the held revision may be seen while it is open.
                        bookmark = await stream.next(within=20)
                        assert (bookmark["type"], bookmark["revision"]) == ("BOOKMARK", before)
                        assert not later.done()
                        await (held.commit() if outcome == "commit" else held.rollback())
                    allocated = (await later).json()
                    events = await stream.until(allocated["revision"])
                    if outcome == "commit":
                        assert [(e["type"], e["revision"]) for e in events] == [
                            ("RANGE_ADDED", before + 1),
                            ("ALLOCATED", before + 2),
                        ]
                    else:  # the rolled-back revision is taken by the next writer: no hole
                        assert [(e["type"], e["revision"]) for e in events] == [
                            ("ALLOCATED", before + 1)
                        ]
    log = await database_log(engine)
    assert [e["revision"] for e in log] == list(range(1, len(log) + 1))


async def test_release_then_reallocation_of_one_address_arrive_in_that_order(
    engine: AsyncEngine, database_url: str
) -> None:
    with running_server(database_url) as one, running_server(database_url) as two:
        async with httpx.AsyncClient(timeout=30) as http:
            await http.post(f"{one}/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/24"})
            async with watching(two, since=1) as stream:
                await stream.live()
                for n in range(5):
                    ip = "10.1.0.7"
                    owner, other = f"first-{n}", f"second-{n}"
                    await http.post(f"{one}/v1/allocations", json={"owner": owner, "ip": ip})
                    await http.delete(f"{two}/v1/allocations/{ip}", params={"owner": owner})
                    await http.post(f"{one}/v1/allocations", json={"owner": other, "ip": ip})
                    events = await stream.until(await head(engine))
                    assert [(e["type"], e["allocation"]["owner"]) for e in events] == [
                        ("ALLOCATED", owner),
                        ("RELEASED", owner),
                        ("ALLOCATED", other),
                    ]
                    await http.delete(f"{two}/v1/allocations/{ip}")
                    await stream.until(await head(engine))


async def test_initial_list_under_concurrent_writes_is_one_revision_then_every_later_event(
    engine: AsyncEngine, database_url: str
) -> None:
    with running_server(database_url) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            await http.post("/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/22"})
            stop = asyncio.Event()

            async def writer(n: int) -> None:
                i = 0
                while not stop.is_set():
                    held = await http.post("/v1/allocations", json={"owner": f"w{n}-{i}"})
                    if i % 3 == 2:
                        await http.delete(f"/v1/allocations/{held.json()['ip']}")
                    i += 1

            writers = [asyncio.create_task(writer(n)) for n in range(4)]
            await asyncio.sleep(0.5)
            async with watching(base, initial="true") as stream:
                listed = await stream.live()
                await asyncio.sleep(0.5)
                stop.set()
                await asyncio.gather(*writers)
                final = await head(engine)
                later = await stream.until(final)
            cut = next(i for i, e in enumerate(listed) if e.get("initial_end"))
            listed, later = listed[:cut], listed[cut + 1 :] + later
            at = listed[0]["revision"]
            assert at > 1, "the writers were busy while the list was taken"
            assert {e["revision"] for e in listed} == {at}
            assert later == await database_log(engine, at), "exactly the events after S"
            assert [e["type"] for e in listed[:1]] == ["RANGE_ADDED"]
            state = {e["allocation"]["ip"]: e["allocation"]["owner"] for e in listed[1:]}
            for event in later:
                if event["type"] == "ALLOCATED":
                    state[event["allocation"]["ip"]] = event["allocation"]["owner"]
                elif event["type"] == "RELEASED":
                    del state[event["allocation"]["ip"]]
            assert state == await allocations_table(engine)


async def test_compacted_revisions_answer_410_and_the_client_lists_again(
    engine: AsyncEngine, database_url: str
) -> None:
    env = {"ALLOCATOR_EVENT_RETENTION_COUNT": "3", "ALLOCATOR_COMPACTION_INTERVAL_SECONDS": "0.2"}
    with running_server(database_url, **env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            await http.post("/v1/ranges", json={"name": "r", "cidr": "10.1.0.0/24"})
            for n in range(8):
                await http.post("/v1/allocations", json={"owner": f"o{n}"})
            compacted = 0
            async with asyncio.timeout(20):
                while compacted < 9 - 3:
                    await asyncio.sleep(0.1)
                    async with engine.connect() as connection:
                        query = text("SELECT compacted FROM log_head")
                        compacted = (await connection.execute(query)).scalar_one()
            assert compacted == 9 - 3, "the newest 3 are kept"
            gone = await http.get("/v1/events", params={"since": 0})
            assert (gone.status_code, gone.json()["type"]) == (410, "revision-compacted")
            assert [e["revision"] for e in await database_log(engine)] == [7, 8, 9]
            refused = await http.get("/v1/watch", params={"since": 2})
            assert (refused.status_code, refused.json()["type"]) == (410, "revision-compacted")
            assert (await http.get("/v1/events", params={"since": compacted})).status_code == 200

            watch = AsyncWatch(http, since=2)
            async with asyncio.timeout(20):
                async for event in watch:
                    if event.get("initial_end"):
                        break
            state = watch.state
            assert state.revision == 9
            assert {ip: a["owner"] for ip, a in state.allocations.items()} == (
                await allocations_table(engine)
            )
            assert list(state.ranges) == ["r"]


async def test_the_watch_sends_its_token_and_a_refusal_is_raised_not_retried(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    reader = new_token()
    append_record(tmp_path / "tokens", record_for(reader, "agent", Role.READER))
    with running_server(database_url, ALLOCATOR_TOKENS_FILE=str(tmp_path / "tokens")) as base:
        watch = AsyncWatch(base, token=reader)
        async with asyncio.timeout(20):
            async for event in watch:
                if event.get("initial_end"):
                    break
        await watch.aclose()
        assert watch.state.revision == 0
        anonymous = AsyncWatch(base, token="")

        async def follow() -> None:
            async for _ in anonymous:
                pass

        with pytest.raises(ProblemError) as refused:
            await asyncio.wait_for(follow(), 20)
        await anonymous.aclose()
        assert refused.value.status == 401
