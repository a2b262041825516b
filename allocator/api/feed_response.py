"""The streaming response of a watch: batches of frames in NDJSON or SSE, and no reader holds
us forever.

Each step of the stream is what has accumulated for the watcher, written at once: one write per
delivery, of bytes joined once for every watcher that gets the same batch.

A client that stops reading fills its socket buffers, after which each write waits. A write that
waits longer than ``send_timeout`` ends the response (the connection is closed), so a stalled
reader holds neither its subscription nor a task; its client reconnects and resumes. One timer
per stream checks that, every ``send_timeout / 2`` (a write waits at most 1.5 times as long):
not one per write.

The response's start goes through every middleware; its body, once started, straight to the
server's ``send`` when the outermost middleware left it in the scope (``SERVER_SEND``): the
others only watch for the start, and their wrappers cost a few coroutine calls per delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from allocator.api.middleware import SERVER_SEND
from allocator.service.feed.frame import NDJSON, SSE, Batch, Wire

log = logging.getLogger(__name__)


class FeedResponse(StreamingResponse):
    def __init__(
        self,
        stream: AsyncGenerator[list[Batch]],
        wire: Wire,
        send_timeout: float,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self._stream = stream
        self._wire: Wire = wire
        self._send_timeout = send_timeout
        self._on_close = on_close
        self._writing_since: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._body_send: Send | None = None
        super().__init__(
            (),  # the stream is written by stream_response below
            media_type=NDJSON if wire == "ndjson" else SSE,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._body_send = scope.get(SERVER_SEND)
        await super().__call__(scope, receive, send)

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        send = self._body_send or send
        loop = asyncio.get_running_loop()
        wire = self._wire
        try:
            async with asyncio.timeout(None) as stalled:
                self._watchdog = loop.call_later(self._send_timeout / 2, self._check, stalled)
                try:
                    async for taken in self._stream:
                        body = (
                            taken[0].on(wire)
                            if len(taken) == 1
                            else b"".join(batch.on(wire) for batch in taken)
                        )
                        self._writing_since = loop.time()
                        await send({"type": "http.response.body", "body": body, "more_body": True})
                        self._writing_since = None
                finally:
                    if self._watchdog is not None:
                        self._watchdog.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            if not stalled.expired():
                raise
            # Returning without the last message makes the server close the connection.
            log.info("a watcher read nothing for %.0f s: dropped", self._send_timeout)
        finally:
            # Release the subscription (or the list) now, not at collection; shielded, because a
            # client that went away cancels this task.
            with anyio.CancelScope(shield=True):
                try:
                    await self._stream.aclose()
                finally:
                    self._on_close()

    def _check(self, stalled: asyncio.Timeout) -> None:
        """Expire ``stalled`` (which ends the response) once a write has waited too long."""
        loop = asyncio.get_running_loop()
        since = self._writing_since
        if since is not None and loop.time() - since >= self._send_timeout:
            stalled.reschedule(loop.time())
            return
        self._watchdog = loop.call_later(self._send_timeout / 2, self._check, stalled)
