"""The agent's loop: follow the feed, and program the dataplane after each burst of changes.

Events only mark the dataplane dirty; a separate task waits ``debounce`` seconds after the first
mark (so a burst of changes becomes one update), renders the whole script from the watch's state
and applies it with one ``nft -f`` (atomic). An unchanged script is not applied again. A failed
``nft`` run is retried after a pause, from the state of that moment.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from allocator.agent.nft import Scheduler, dataplane_of, render
from allocator.agent.status import Lag, serve_status
from allocator.client.watch import AsyncWatch, FeedState

log = logging.getLogger(__name__)

Apply = Callable[[str], Awaitable[None]]


class NftError(Exception):
    """``nft -f`` refused the script."""


async def nft_apply(script: str) -> None:
    """Load ``script`` with ``nft -f -`` (one kernel transaction); raise NftError on failure."""
    process = await asyncio.create_subprocess_exec(
        "nft", "-f", "-", stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, errors = await process.communicate(script.encode())
    if process.returncode != 0:
        raise NftError(errors.decode(errors="replace").strip())


async def print_script(script: str) -> None:
    sys.stdout.write(script)
    sys.stdout.flush()


@dataclass
class AgentOptions:
    scheduler: Scheduler = Scheduler.RANDOM
    debounce: float = 0.05
    report_seconds: float = 30.0
    retry_seconds: float = 1.0
    status_host: str = "127.0.0.1"
    status_port: int | None = None


def script_of(state: FeedState, scheduler: Scheduler) -> str:
    """Return the nft script of a feed state."""
    dataplane = dataplane_of(
        ((r["cidr"], r["family"]) for r in state.ranges.values()),
        ((a["ip"], a["family"], a.get("metadata")) for a in state.allocations.values()),
    )
    return render(dataplane, scheduler)


class Agent:
    """Keeps the dataplane in step with the feed of ``server``; ``run()`` until cancelled."""

    def __init__(self, server: str, apply: Apply, options: AgentOptions | None = None) -> None:
        self.watch = AsyncWatch(server)
        self.lag = Lag()
        self._apply = apply
        self._options = options or AgentOptions()
        self._dirty = asyncio.Event()
        self._listed = False
        self._busy = False
        self.applied_script: str | None = None

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._program()), asyncio.create_task(self._report())]
        status = None
        if self._options.status_port is not None:
            status = await serve_status(
                self.lag, self._options.status_host, self._options.status_port
            )
        try:
            async for event in self.watch:
                self.lag.seen(event["revision"])
                if event.get("initial_end"):
                    self._listed = True
                if not self._listed:
                    continue  # nothing is programmed from half a list
                if event["type"] != "BOOKMARK" or event.get("initial_end"):
                    self._dirty.set()
                elif not self._dirty.is_set() and not self._busy and self.lag.applied >= 0:
                    # Nothing changed since the last update: the dataplane is at this revision.
                    self.lag.advanced(event["revision"])
        finally:
            for task in tasks:
                task.cancel()
            if status is not None:
                status.close()
            await self.watch.aclose()

    async def _program(self) -> None:
        while True:
            await self._dirty.wait()
            self._busy = True
            try:
                await asyncio.sleep(self._options.debounce)
                self._dirty.clear()
                await self._program_once()
            finally:
                self._busy = False

    async def _program_once(self) -> None:
        state = self.watch.state  # consistent: events change it only between awaits
        script = script_of(state, self._options.scheduler)
        if script != self.applied_script:
            try:
                await self._apply(script)
            except (NftError, OSError) as exc:
                log.error("programming the dataplane failed: %s", exc)
                await asyncio.sleep(self._options.retry_seconds)
                self._dirty.set()
                return
            first, self.applied_script = self.applied_script is None, script
        else:
            first = False
        self.lag.programmed(state.revision, len(state.ranges), len(state.allocations))
        log.log(logging.INFO if first else logging.DEBUG, "%s", self.lag.line())

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(self._options.report_seconds)
            log.info("%s", self.lag.line())
