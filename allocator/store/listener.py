"""LISTEN for new log revisions on a dedicated connection to the primary, reconnecting when it dies.

Notifications only wake the tailer sooner; it polls as well, so while this connection is down
(a restart of Postgres, a failover, a terminated backend, a network cut) events are delayed by at
most the poll interval, never lost. Notifications are sent by the primary only, so the connector
must find it (``target_session_attrs=read-write``, the default with several hosts).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from allocator.store.dsn import Connector
from allocator.store.event_log import CHANNEL

log = logging.getLogger(__name__)

APPLICATION_NAME = "clusterip-allocator-listener"
PING_SECONDS = 10.0
"""A connection that died without a word (a cut network) is noticed by a ping this often."""
_SERVER = "SELECT coalesce(host(inet_server_addr()) || ':' || inet_server_port(), 'a local socket')"


class Listener:
    """Calls ``on_notify`` for every notification on ``CHANNEL``, and once after each (re)connect,
    since notifications sent while it was away are lost."""

    def __init__(
        self, connect: Connector, on_notify: Callable[[], None], *, max_backoff: float = 5.0
    ) -> None:
        self._connect = connect
        self._on_notify = on_notify
        self._max_backoff = max_backoff
        self.connected = False
        self.server: str | None = None
        """Where the live connection is (``host:port``), for readiness and logs."""
        self.connections = 0
        """How many times a connection was made (a test can observe a reconnect)."""

    async def run(self) -> None:
        """Listen until cancelled. A failure is logged once, until listening works again."""
        backoff = 0.1
        failing = False
        while True:
            try:
                await self._listen_once()
                backoff = 0.1
            except Exception as exc:  # whatever it is, polling covers for it: try again later
                if self.connected or not failing:
                    log.warning("event listener: %s; polling meanwhile, retrying", _reason(exc))
                failing = True
            self.connected, self.server = False, None
            await asyncio.sleep(random.uniform(backoff / 2, backoff))
            backoff = min(backoff * 2, self._max_backoff)

    async def _listen_once(self) -> None:
        connection = await self._connect()
        closed = asyncio.Event()
        connection.add_termination_listener(lambda _connection: closed.set())
        try:
            await connection.add_listener(CHANNEL, self._notified)
            self.server = await connection.fetchval(_SERVER, timeout=PING_SECONDS)
            self.connected = True
            self.connections += 1
            if self.connections > 1:
                log.warning("event listener: listening again on %s", self.server)
            self._on_notify()
            while not connection.is_closed():
                try:
                    async with asyncio.timeout(PING_SECONDS):  # not wait_for: see Tailer.run
                        await closed.wait()
                except TimeoutError:
                    await connection.fetchval("SELECT 1", timeout=PING_SECONDS)
            raise ConnectionError("the connection was closed")
        finally:
            connection.terminate()

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self._on_notify()


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
