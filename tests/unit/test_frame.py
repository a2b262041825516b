"""Frames: the wire forms of an event, and what a frame keeps in memory."""

from __future__ import annotations

import tracemalloc

import orjson

from allocator.service.feed.frame import Batch, of_event, of_stored

EVENT = {
    "type": "ALLOCATED",
    "revision": 7,
    "allocation": {"ip": "10.0.0.1", "owner": "default/web", "range": "a", "metadata": {}},
}


def test_a_frame_holds_the_event_as_json_ndjson_and_sse() -> None:
    frame = of_stored(7, '{"type": "ALLOCATED", "revision": 7}')
    assert frame.json == b'{"type":"ALLOCATED","revision":7}'
    assert frame.on("ndjson") == frame.json + b"\n"
    assert frame.on("sse") == b"id: 7\ndata: " + frame.json + b"\n\n"
    assert Batch([frame, frame]).on("ndjson") == frame.ndjson * 2


def test_a_frame_keeps_bytes_of_its_size_not_the_encoders_buffer() -> None:
    """A window of thousands of frames: each must cost about its three forms, not the kilobytes
    of the buffer orjson wrote it in."""
    size = len(orjson.dumps(EVENT))
    tracemalloc.start()
    try:
        frames = [of_event(EVENT) for _ in range(1000)]
        kept = tracemalloc.get_traced_memory()[0] / len(frames)
    finally:
        tracemalloc.stop()
    assert kept < 4 * size + 400, (kept, size)
