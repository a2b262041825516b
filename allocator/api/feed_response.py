"""The streaming response of a watch: frames in NDJSON or SSE, and no reader holds us forever.

A client that stops reading fills its socket buffers, after which each write waits. A write that
waits longer than ``send_timeout`` ends the response (the connection is closed), so a stalled
reader holds neither its subscription nor a task; its client reconnects and resumes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Send

from allocator.service.feed.frame import NDJSON, SSE, Frame, Wire

log = logging.getLogger(__name__)


class FeedResponse(StreamingResponse):
    def __init__(
        self,
        stream: AsyncGenerator[list[Frame]],
        wire: Wire,
        send_timeout: float,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self._stream = stream
        self._send_timeout = send_timeout
        self._on_close = on_close
        self._chunks = (b"".join(frame.on(wire) for frame in frames) async for frames in stream)
        super().__init__(
            self._chunks,
            media_type=NDJSON if wire == "ndjson" else SSE,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        try:
            async for chunk in self.body_iterator:
                message = {"type": "http.response.body", "body": chunk, "more_body": True}
                try:
                    async with asyncio.timeout(self._send_timeout):
                        await send(message)
                except TimeoutError:
                    # Returning without the last message makes the server close the connection.
                    log.info("a watcher read nothing for %.0f s: dropped", self._send_timeout)
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            # Release the subscription (or the snapshot's transaction) now, not at collection;
            # shielded, because a client that went away cancels this task.
            with anyio.CancelScope(shield=True):
                try:
                    await self._chunks.aclose()
                    await self._stream.aclose()
                finally:
                    self._on_close()
