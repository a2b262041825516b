"""LISTEN for new log revisions on a dedicated connection, reconnecting when it dies.

Notifications only wake the tailer sooner; it polls as well, so while this connection is down
(a restart of Postgres, a terminated backend, a network cut) events are delayed by at most the
poll interval, never lost.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from allocator.store.event_log import CHANNEL

log = logging.getLogger(__name__)

APPLICATION_NAME = "clusterip-allocator-listener"
PING_SECONDS = 10.0
"""A connection that died without a word (a cut network) is noticed by a ping this often."""


def dsn_of(url: URL) -> str:
    """Return the plain libpq URL of an engine URL (asyncpg takes no driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """Calls ``on_notify`` for every notification on ``CHANNEL``, and once after each (re)connect,
    since notifications sent while it was away are lost."""

    def __init__(
        self,
        dsn: str,
        on_notify: Callable[[], None],
        *,
        connect_timeout: float = 5.0,
        max_backoff: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._on_notify = on_notify
        self._connect_timeout = connect_timeout
        self._max_backoff = max_backoff
        self.connected = False
        self.connections = 0
        """How many times a connection was made (a test can observe a reconnect)."""

    async def run(self) -> None:
        """Listen until cancelled."""
        backoff = 0.1
        while True:
            try:
                await self._listen_once()
                backoff = 0.1
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("event listener connection lost (%s); polling meanwhile", exc)
            self.connected = False
            await asyncio.sleep(random.uniform(0, backoff))
            backoff = min(backoff * 2, self._max_backoff)

    async def _listen_once(self) -> None:
        connection = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            server_settings={"application_name": APPLICATION_NAME},
        )
        closed = asyncio.Event()
        connection.add_termination_listener(lambda _connection: closed.set())
        try:
            await connection.add_listener(CHANNEL, self._notified)
            self.connected = True
            self.connections += 1
            self._on_notify()
            while not connection.is_closed():
                try:
                    async with asyncio.timeout(PING_SECONDS):  # not wait_for: see Tailer.run
                        await closed.wait()
                except TimeoutError:
                    await connection.fetchval("SELECT 1", timeout=self._connect_timeout)
            log.warning("event listener connection closed; reconnecting")
        finally:
            connection.terminate()

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self._on_notify()
