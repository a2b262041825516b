"""The asyncio client: the same calls as ``AllocatorClient``, awaited."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from allocator.client import calls
from allocator.client.calls import Call
from allocator.client.connection import Verify, http_options
from allocator.client.errors import ServerUnreachable
from allocator.client.models import Allocation, AllocationPage, BatchResults, Occupancy, Range
from allocator.client.watch import AsyncWatch, EventPage, events_call


class AsyncAllocatorClient:
    """Typed calls of every endpoint. Raises ProblemError for refusals (its ``type`` is the
    problem type of docs/api.md) and ServerUnreachable when no answer comes.

    ``token`` and ``verify`` default to ``ALLOCATOR_TOKEN`` and ``ALLOCATOR_CA_FILE`` (see
    ``allocator.client.connection``)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        *,
        token: str | None = None,
        timeout: float = 10.0,
        verify: Verify = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url, timeout=timeout, transport=transport, **http_options(token, verify)
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send(self, call: Call) -> Any:
        """Send ``call``; return its decoded body (None for 204)."""
        try:
            response = await self.http.request(
                call.method, call.path, params=call.params, json=call.json
            )
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"{self.http.base_url}: {exc or type(exc).__name__}") from exc
        return calls.result(call, response)

    async def create_range(
        self, name: str, cidr: str, *, release_cooldown_seconds: int | None = None
    ) -> Range:
        result: Range = await self.send(calls.create_range(name, cidr, release_cooldown_seconds))
        return result

    async def change_range(
        self,
        name: str,
        *,
        cidr: str | None = None,
        allocatable: bool | None = None,
        release_cooldown_seconds: int | None = None,
    ) -> Range:
        """Resize the range to ``cidr``, drain it (``allocatable=False``) or serve again, or
        change its cool-down, in one change; return the range after it."""
        call = calls.change_range(
            name,
            cidr=cidr,
            allocatable=allocatable,
            release_cooldown_seconds=release_cooldown_seconds,
        )
        result: Range = await self.send(call)
        return result

    async def list_ranges(self) -> list[Range]:
        result: list[Range] = (await self.send(calls.list_ranges()))["items"]
        return result

    async def get_range(self, name: str) -> Range:
        result: Range = await self.send(calls.get_range(name))
        return result

    async def get_occupancy(self, name: str, *, cells: int = 0) -> Occupancy:
        """Return the per-band and per-block counts of a range, and a map of ``cells`` slices."""
        result: Occupancy = await self.send(calls.get_occupancy(name, cells))
        return result

    async def delete_range(self, name: str) -> None:
        await self.send(calls.delete_range(name))

    async def allocate(
        self,
        owner: str,
        *,
        ip: str | None = None,
        range: str | None = None,
        family: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Allocation:
        result: Allocation = await self.send(calls.allocate(owner, ip, range, family, metadata))
        return result

    async def allocate_many(
        self, requests: Sequence[Mapping[str, Any]], *, atomic: bool = True
    ) -> BatchResults:
        """Send up to 1000 bodies of ``allocate`` as one batch: answered in order as in one
        transaction. Atomic, a refusal raises ProblemError ``batch-failed`` (nothing stored, its
        ``errors`` name each refused request); otherwise each result has its own status."""
        result: BatchResults = await self.send(calls.allocate_many(requests, atomic))
        return result

    async def dual_stack(
        self,
        owner: str,
        *,
        policy: str = "RequireDualStack",
        families: Sequence[str] = ("IPv4", "IPv6"),
        ips: Mapping[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[Allocation]:
        """Allocate ``owner`` one address of each family as Kubernetes' ``ipFamilyPolicy`` says:
        ``RequireDualStack`` gets all of them or raises ProblemError (``batch-failed``);
        ``PreferDualStack`` gets those that could be had, and raises only when none could."""
        batch = await self.send(calls.dual_stack(owner, policy, families, ips, metadata))
        return calls.held(batch)

    async def get_allocation(self, ip: str) -> Allocation:
        result: Allocation = await self.send(calls.get_allocation(ip))
        return result

    async def list_allocations(
        self,
        *,
        range: str | None = None,
        owner: str | None = None,
        family: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> AllocationPage:
        """Return one page; see ``iter_allocations`` to walk them all."""
        result: AllocationPage = await self.send(
            calls.list_allocations(range, owner, family, limit, cursor)
        )
        return result

    async def iter_allocations(
        self, *, range: str | None = None, owner: str | None = None, family: str | None = None
    ) -> AsyncIterator[Allocation]:
        """Yield every matching allocation in address order, fetching pages as needed."""
        cursor = None
        while True:
            page = await self.list_allocations(
                range=range, owner=owner, family=family, cursor=cursor
            )
            for item in page["items"]:
                yield item
            cursor = page["next_cursor"]
            if cursor is None:
                return

    async def release(self, ip: str, *, owner: str | None = None) -> None:
        await self.send(calls.release(ip, owner))

    async def release_owner(self, owner: str) -> list[Allocation]:
        result: list[Allocation] = (await self.send(calls.release_owner(owner)))["released"]
        return result

    async def events(
        self, since: int = 0, limit: int | None = None, epoch: str | None = None
    ) -> EventPage:
        """Return the events after ``since`` (of ``epoch``, the previous page's), the head
        revision and its epoch (the poll form)."""
        result: EventPage = await self.send(events_call(since, limit, epoch))
        return result

    def watch(self, *, since: int | None = None) -> AsyncWatch:
        """Return a list+watch (or a watch from ``since``) over this client's connection."""
        return AsyncWatch(self.http, since=since)
