"""The Python client of the allocator's HTTP API (httpx), sync and async.

from allocator.client import AllocatorClient
with AllocatorClient("http://127.0.0.1:8080") as api:
    vip = api.allocate("default/web")
"""

from allocator.client.asynchronous import AsyncAllocatorClient
from allocator.client.errors import ClientError, ProblemError, ServerUnreachable
from allocator.client.models import (
    Allocation,
    AllocationPage,
    BatchResult,
    BatchResults,
    Occupancy,
    Range,
    Released,
)
from allocator.client.synchronous import AllocatorClient

__all__ = [
    "Allocation",
    "AllocationPage",
    "AllocatorClient",
    "AsyncAllocatorClient",
    "BatchResult",
    "BatchResults",
    "ClientError",
    "Occupancy",
    "ProblemError",
    "Range",
    "Released",
    "ServerUnreachable",
]
