"""The state-changing use cases as the routes call them: each wrapper calls one service function,
then counts it in the app's metrics and logs one line for the change (with the request id, owner,
IP, range and revision), so routes stay one call long and the hot path stays free of both."""

from __future__ import annotations

import logging
import time

import netaddr
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from allocator.api.deps import allocator
from allocator.api.logs import request_id
from allocator.api.metrics import Metrics
from allocator.domain.errors import AllocatorError
from allocator.domain.model import Allocation, Range
from allocator.service import ranges
from allocator.service.allocator import AllocationRequest, BatchResult

log = logging.getLogger("allocator.change")


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def _log_allocation(message: str, allocation: Allocation, revision: int | None = None) -> None:
    if not log.isEnabledFor(logging.INFO):
        return  # the record's fields cost more to gather than the change they describe
    log.info(
        "%s %s",
        message,
        allocation.ip,
        extra={
            "request_id": request_id.get(),
            "owner": allocation.owner,
            "ip": str(allocation.ip),
            "range": allocation.range,
            "revision": revision,
        },
    )


async def allocate(request: Request, wanted: AllocationRequest) -> tuple[Allocation, bool]:
    """``Allocator.allocate``, timed and counted by scope (static when an IP was asked for)."""
    metrics = _metrics(request)
    scope = "dynamic" if wanted.ip is None else "static"
    started = time.perf_counter()
    try:
        allocation, created = await allocator(request).allocate(wanted)
    except AllocatorError as error:
        metrics.child(metrics.allocation_errors, wanted.range or "", scope, error.type).inc()
        raise
    finally:
        metrics.child(metrics.allocation_duration, scope).observe(time.perf_counter() - started)
    if created:
        metrics.child(metrics.allocations, allocation.range, scope).inc()
        _log_allocation("allocated", allocation, allocation.revision)
    return allocation, created


async def allocate_many(
    request: Request, wanted: list[AllocationRequest], atomic: bool
) -> BatchResult:
    """``Allocator.allocate_many``, its size observed, each new allocation counted and logged."""
    metrics = _metrics(request)
    metrics.batch_size.observe(len(wanted))
    try:
        batch = await allocator(request).allocate_many(wanted, atomic=atomic)
    except AllocatorError as error:
        metrics.child(metrics.batch_errors, error.type).inc()
        raise
    for one, answer in zip(wanted, batch.answers, strict=True):
        scope = "dynamic" if one.ip is None else "static"
        if isinstance(answer, AllocatorError):
            metrics.child(metrics.allocation_errors, one.range or "", scope, answer.type).inc()
        elif answer[1]:
            metrics.child(metrics.allocations, answer[0].range, scope).inc()
            _log_allocation("allocated", answer[0], answer[0].revision)
    return batch


async def release(request: Request, ip: netaddr.IPAddress, owner: str | None) -> Allocation:
    """``Allocator.release``, counted per range."""
    released, revision = await allocator(request).release(ip, owner)
    metrics = _metrics(request)
    metrics.child(metrics.releases, released.range).inc()
    _log_allocation("released", released, revision)
    return released


async def release_owner(request: Request, owner: str) -> list[Allocation]:
    """``Allocator.release_owner``, each released allocation counted and logged."""
    released = await allocator(request).release_owner(owner)
    metrics = _metrics(request)
    for one, revision in released:
        metrics.child(metrics.releases, one.range).inc()
        _log_allocation("released", one, revision)
    return [one for one, _ in released]


async def create_range(
    engine: AsyncEngine, name: str, cidr: str, release_cooldown_seconds: int
) -> Range:
    """``ranges.create_range``, logged."""
    created = await ranges.create_range(
        engine, name, cidr, release_cooldown_seconds=release_cooldown_seconds
    )
    log.info(
        "range created %s %s",
        name,
        created.geometry.cidr,
        extra={
            "request_id": request_id.get(),
            "range": name,
            "cidr": created.geometry.cidr,
            "revision": created.revision,
        },
    )
    return created


async def change_range(engine: AsyncEngine, name: str, change: ranges.RangeChange) -> str:
    """``ranges.change_range``, logged."""
    changed = await ranges.change_range(engine, name, change)
    log.info(
        "range changed %s %s",
        name,
        change.given(),
        extra={"request_id": request_id.get(), "range": name},
    )
    return changed


async def delete_range(engine: AsyncEngine, name: str) -> int:
    """``ranges.delete_range``, logged."""
    revision = await ranges.delete_range(engine, name)
    log.info(
        "range deleted %s",
        name,
        extra={"request_id": request_id.get(), "range": name, "revision": revision},
    )
    return revision
