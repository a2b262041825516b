"""The allocator's errors, one hierarchy, each naming its problem type.

    AllocatorError
     ├── InvalidRequest           422 invalid-request
     ├── IPNotInRange             422 ip-not-in-range
     ├── NoRangeForFamily         422 no-range-for-family
     ├── RangeNotFound            404 range-not-found
     ├── IPNotAllocated           404 ip-not-allocated
     ├── RangeExists              409 range-exists
     ├── RangeOverlaps            409 range-overlaps        (conflicting_range)
     ├── RangeNotEmpty            409 range-not-empty       (allocated)
     ├── RangeFull                409 range-full
     ├── IPAlreadyAllocated       409 ip-already-allocated  (holder)
     ├── OwnerHasAllocation       409 owner-has-allocation  (allocation)
     ├── OwnerMismatch            409 owner-mismatch        (holder)
     ├── IPCoolingDown            409 ip-cooling-down       (available_at, released_by)
     ├── RangeNotAllocatable      409 range-not-allocatable
     ├── AllocationsOutsideRange  409 allocations-outside-range (count, examples)
     ├── BatchFailed              the first refusal's status, batch-failed (errors)
     ├── RevisionCompacted        410 revision-compacted
     ├── RevisionUnknown          410 revision-unknown
     ├── Unauthorized             401 unauthorized          (no token, or one that is not known)
     ├── Forbidden                403 forbidden             (role, permission)
     ├── RequestTooLarge          413 request-too-large     (limit)
     ├── TooManyWatchers          429 too-many-watchers     (limit)
     └── Unavailable              503 database-unavailable

The HTTP status of each lives in one table in the API layer; here each error carries only its type
slug, a human detail and its extension members.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AllocatorError(Exception):
    """Base of every error the allocator reports to its clients."""

    type: ClassVar[str] = "about:blank"
    title: ClassVar[str] = "Allocator error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class InvalidRequest(AllocatorError):
    type = "invalid-request"
    title = "Invalid request"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        errors = [{"field": field, "message": detail}] if field else []
        super().__init__(detail, errors=errors)


class IPNotInRange(AllocatorError):
    type = "ip-not-in-range"
    title = "IP not in a usable range"


class NoRangeForFamily(AllocatorError):
    type = "no-range-for-family"
    title = "No range for this family"


class RangeNotFound(AllocatorError):
    type = "range-not-found"
    title = "Range not found"


class IPNotAllocated(AllocatorError):
    type = "ip-not-allocated"
    title = "IP not allocated"


class RangeExists(AllocatorError):
    type = "range-exists"
    title = "Range already exists"


class RangeOverlaps(AllocatorError):
    type = "range-overlaps"
    title = "Range overlaps an existing range"


class RangeNotEmpty(AllocatorError):
    type = "range-not-empty"
    title = "Range still has allocations"


class RangeFull(AllocatorError):
    type = "range-full"
    title = "No free address"


class IPAlreadyAllocated(AllocatorError):
    type = "ip-already-allocated"
    title = "IP already allocated"


class OwnerHasAllocation(AllocatorError):
    type = "owner-has-allocation"
    title = "Owner already holds an allocation in this family"


class OwnerMismatch(AllocatorError):
    type = "owner-mismatch"
    title = "Another owner holds this IP"


class IPCoolingDown(AllocatorError):
    type = "ip-cooling-down"
    title = "IP cooling down after its release"


class RangeNotAllocatable(AllocatorError):
    type = "range-not-allocatable"
    title = "Range drained"


class AllocationsOutsideRange(AllocatorError):
    type = "allocations-outside-range"
    title = "Allocations outside the new range"


class BatchFailed(AllocatorError):
    """An atomic batch of which some requests were refused: nothing was stored. ``refusals``
    holds each refused request's index and error."""

    type = "batch-failed"
    title = "Batch failed"

    def __init__(self, detail: str, refusals: list[tuple[int, AllocatorError]]) -> None:
        super().__init__(detail)
        self.refusals = refusals


class RevisionCompacted(AllocatorError):
    type = "revision-compacted"
    title = "Revision compacted"


class RevisionUnknown(AllocatorError):
    type = "revision-unknown"
    title = "Revision unknown"


class Unauthorized(AllocatorError):
    type = "unauthorized"
    title = "Unauthorized"


class Forbidden(AllocatorError):
    type = "forbidden"
    title = "Forbidden"


class RequestTooLarge(AllocatorError):
    type = "request-too-large"
    title = "Request too large"


class TooManyWatchers(AllocatorError):
    type = "too-many-watchers"
    title = "Too many watchers"


class Unavailable(AllocatorError):
    type = "database-unavailable"
    title = "Database unavailable"
