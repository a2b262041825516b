"""/readyz is 503 while the database cannot be reached or its schema is behind; /healthz stays 200."""

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.api.app import create_app
from allocator.settings import Settings
from allocator.store.database import create_engine
from allocator.store.dsn import DatabaseUrl
from tests.database import fresh_database


class Outage:
    """A TCP relay in front of Postgres that can be cut: the database becomes unreachable for
    everything that connects through it, as when its host goes away."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.streams: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.host.startswith("/"):  # the embedded Postgres listens on a Unix socket
            socket_path = f"{self.host}/.s.PGSQL.{self.port}"
            up_reader, up_writer = await asyncio.open_unix_connection(socket_path)
        else:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self.streams += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for stream in self.streams:
            stream.transport.abort()


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_not_ready_while_the_database_is_unreachable(
    engine: AsyncEngine, database_url: str
) -> None:
    url = DatabaseUrl.parse(database_url)
    outage = Outage(url.hosts[0] if url.hosts else "127.0.0.1", url.ports[0] if url.ports else 5432)
    port = await outage.start()
    relayed = dataclasses.replace(url, hosts=("127.0.0.1",), ports=(port,)).libpq()
    async with serving(Settings(database_url=relayed, connect_timeout=1)) as http:
        assert (await http.get("/readyz")).status_code == 200
        outage.cut()
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert (await http.get("/healthz")).status_code == 200, "the process still lives"
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert "allocator_database_up 0.0" in metrics.text


async def test_not_ready_while_the_schema_is_behind_the_newest_migration(
    engine: AsyncEngine,
) -> None:
    database = fresh_database()  # its setup runs an event loop of its own: not in this one
    url = await asyncio.to_thread(database.__enter__)
    try:
        settings = Settings(database_url=url)
        async with serving(settings) as http:
            assert (await http.get("/readyz")).status_code == 200
            other = create_engine(url, settings)
            try:
                async with other.begin() as connection:  # as if the newest migration were undone
                    version = (
                        await connection.execute(text("DELETE FROM alembic_version RETURNING *"))
                    ).scalar_one()
                behind = await http.get("/readyz")
                assert (behind.status_code, behind.json()["reason"]) == (503, "schema not migrated")
                async with other.begin() as connection:
                    await connection.execute(
                        text("INSERT INTO alembic_version VALUES (:v)"), {"v": version}
                    )
                assert (await http.get("/readyz")).status_code == 200
            finally:
                await other.dispose()
    finally:
        await asyncio.to_thread(database.__exit__, None, None, None)


async def test_a_probe_logs_nothing(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A probe every few seconds must not fill the log: only migrations that run are logged."""
    caplog.set_level(logging.DEBUG)
    assert (await client.get("/readyz")).status_code == 200
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []
