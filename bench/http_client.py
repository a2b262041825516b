"""A minimal HTTP/1.1 keep-alive client for load generation.

A general client (httpx) spends more CPU per request than the server it measures; on a small
machine the load generator would then take the cores it is meant to load. This one writes a
prepared request and reads the status line, the headers and a ``Content-Length`` body: enough
for the JSON answers of the allocator, and a few microseconds of CPU per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

IDLE_SECONDS = 4.0
"""How long a connection is reused after its last answer: the server closes one idle for 5 s."""


class Connection:
    """One keep-alive connection (opened again after a pause); requests on it run one at a
    time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self._reader = reader
        self._writer = writer
        self._host = host
        self._used = time.monotonic()

    @classmethod
    async def open(cls, base_url: str) -> Connection:
        parts = urlsplit(base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request; return the status code and the body."""
        if time.monotonic() - self._used > IDLE_SECONDS:
            await self.close()
            host, _, port = self._host.rpartition(":")
            self._reader, self._writer = await asyncio.open_connection(host, int(port))
        head = f"{method} {path} HTTP/1.1\r\nhost: {self._host}\r\n"
        if body:
            head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + body)
        headers = await self._reader.readuntil(b"\r\n\r\n")
        status = int(headers[9:12])
        length = 0
        for line in headers.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
                break
        content = await self._reader.readexactly(length) if length else b""
        self._used = time.monotonic()
        return status, content

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
