"""An event encoded for the wire once, however many watchers it goes to.

A frame holds the two forms the feed is served in: a line of newline-delimited JSON (the Event
object's JSON and a newline) and a Server-Sent Events message whose ``id`` is the revision (so a
browser's ``Last-Event-ID`` resumes where it stopped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

Wire = Literal["ndjson", "sse"]

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


@dataclass(frozen=True, slots=True)
class Frame:
    revision: int
    ndjson: bytes
    sse: bytes

    @property
    def json(self) -> bytes:
        """The Event object's JSON text (a copy: the wire forms are what a frame keeps)."""
        return self.ndjson[:-1]

    def on(self, wire: Wire) -> bytes:
        """Return the bytes of this frame in the ``wire`` format."""
        return self.ndjson if wire == "ndjson" else self.sse


def encode(revision: int, json: bytes) -> Frame:
    """Return the frame of the Event whose compact JSON text is ``json``.

    The frame keeps bytes of its own size, not ``json``: the bytes orjson returns hold the whole
    buffer it wrote them in (4 kB for an event of 120 bytes), and the tailer's window keeps
    thousands of frames."""
    return Frame(
        revision=revision,
        ndjson=json + b"\n",
        sse=b"id: %d\ndata: %s\n\n" % (revision, json),
    )


def of_stored(revision: int, payload: str) -> Frame:
    """Return the frame of an event as the log stores it (JSON text, re-encoded compactly)."""
    return encode(revision, orjson.dumps(orjson.loads(payload)))


def of_event(event: dict[str, Any]) -> Frame:
    """Return the frame of an Event object built in memory (snapshots, bookmarks, errors)."""
    return encode(int(event["revision"]), orjson.dumps(event))


def bookmark(revision: int, epoch: str, *, initial_end: bool = False) -> Frame:
    """A BOOKMARK: ``revision`` and the ``epoch`` it belongs to make a client's resume point."""
    event: dict[str, Any] = {"type": "BOOKMARK", "revision": revision, "epoch": epoch}
    if initial_end:
        event["initial_end"] = True
    return of_event(event)


def error(revision: int, problem: dict[str, Any]) -> Frame:
    return of_event({"type": "ERROR", "revision": revision, "problem": problem})


class Batch:
    """Frames that go out together: their bytes joined once per wire format, however many
    streams send them (the tailer hands every watcher the same batch)."""

    __slots__ = ("_ndjson", "_sse", "frames")

    def __init__(self, frames: Sequence[Frame]) -> None:
        self.frames = frames
        self._ndjson: bytes | None = None
        self._sse: bytes | None = None

    @property
    def last(self) -> int:
        """The revision of the last frame."""
        return self.frames[-1].revision

    def on(self, wire: Wire) -> bytes:
        """Return the bytes of these frames in the ``wire`` format (joined on first use)."""
        if wire == "ndjson":
            if self._ndjson is None:
                self._ndjson = b"".join(frame.ndjson for frame in self.frames)
            return self._ndjson
        if self._sse is None:
            self._sse = b"".join(frame.sse for frame in self.frames)
        return self._sse


def batches(frames: Sequence[Frame], size: int) -> list[Batch]:
    """Return ``frames`` cut in batches of at most ``size``."""
    return [Batch(frames[n : n + size]) for n in range(0, len(frames), size)]
