"""The bench's watcher process counts what a stream brought without scanning every line of a
plain read (``bench.feed_watchers``): its figures must still be those of a line-by-line scan."""

from __future__ import annotations

import asyncio

import orjson

from bench.feed_watchers import Stream

HEADERS = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(*events: dict[str, object]) -> bytes:
    """One HTTP chunk of NDJSON events, as the server writes them."""
    body = b"".join(orjson.dumps(event) + b"\n" for event in events)
    return b"%x\r\n%s\r\n" % (len(body), body)


def allocated(revision: int) -> dict[str, object]:
    return {"type": "ALLOCATED", "revision": revision, "allocation": {"ip": "10.0.0.1"}}


def bookmark(revision: int) -> dict[str, object]:
    return {"type": "BOOKMARK", "revision": revision, "epoch": "e"}


async def stream(since: int, last: int = 10**9) -> tuple[Stream, list[int]]:
    lives: list[int] = []
    made = Stream(
        b"", last, False, asyncio.get_running_loop().create_future(), lambda: lives.append(1)
    )
    made.position = since
    return made, lives


async def test_plain_reads_in_order_count_every_event_and_no_gap() -> None:
    watcher, lives = await stream(10)
    page = chunk(*(allocated(r) for r in range(11, 511)))
    # Split anywhere, even inside a line and inside the chunk framing.
    data = HEADERS + page + chunk(bookmark(510)) + chunk(*(allocated(r) for r in (511, 512)))
    for at in range(0, len(data), 4093):
        watcher.data_received(data[at : at + 4093])
    assert watcher.gaps == 0
    assert watcher.position == 512
    assert sum(high - low + 1 for low, high, _ in watcher.arrivals) == 502
    assert lives == [1], "the bookmark after the catch-up: live"


async def test_a_missing_or_repeated_event_is_a_gap_in_a_plain_read() -> None:
    missing, _ = await stream(10)
    missing.data_received(HEADERS + chunk(*(allocated(r) for r in (11, 12, 14, 15))))
    assert missing.gaps == 1
    assert missing.position == 15
    repeated, _ = await stream(10)
    repeated.data_received(HEADERS + chunk(*(allocated(r) for r in (11, 12, 12, 13))))
    assert repeated.gaps == 1
    behind, _ = await stream(10)
    behind.data_received(HEADERS + chunk(*(allocated(r) for r in (12, 13, 14))))
    assert behind.gaps == 1


async def test_a_stream_is_done_once_the_last_revision_arrives_in_a_plain_read() -> None:
    watcher, _ = await stream(10, last=300)
    watcher.data_received(HEADERS + chunk(*(allocated(r) for r in range(11, 400))))
    assert watcher.done.done()


async def test_a_list_split_anywhere_is_counted_whole_and_then_followed() -> None:
    watcher, lives = await stream(0)
    watcher.listing = True
    listed = [{"type": "RANGE_ADDED", "revision": 40, "range": {"name": "r"}}]
    listed += [allocated(40) for _ in range(300)]
    end = {"type": "BOOKMARK", "revision": 40, "epoch": "e", "initial_end": True}
    data = HEADERS + chunk(*listed[:150]) + chunk(*listed[150:], end, allocated(41))
    data += chunk(allocated(42)) + chunk(bookmark(42))
    for at in range(0, len(data), 1000):
        watcher.data_received(data[at : at + 1000])
    assert watcher.listed == 300
    assert not watcher.listing
    assert watcher.position == 42
    assert watcher.gaps == 0
    assert lives == [1]
