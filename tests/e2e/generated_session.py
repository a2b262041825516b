"""The README's session through a client generated from the server's OpenAPI schema.

``test_generated_client.py`` generates the ``generated_client`` package from ``/openapi.json``,
type-checks this script with ``mypy --strict --disallow-any-expr`` and runs it against a real
server: ``python generated_session.py URL`` prints what it saw as one JSON object.
"""

from __future__ import annotations

import json
import sys

from generated_client import Client
from generated_client.api.allocations import (
    allocate,
    list_allocations,
    release,
    release_owner,
)
from generated_client.api.events import list_events
from generated_client.api.ranges import create_range
from generated_client.models import (
    AllocatedEvent,
    AllocationCreate,
    AllocationCreateMetadata,
    AllocationList,
    AllocationRead,
    BookmarkEvent,
    ErrorEvent,
    EventList,
    Family,
    IPAlreadyAllocatedProblem,
    OwnerMismatchProblem,
    RangeAddedEvent,
    RangeCreate,
    RangeRead,
    RangeRemovedEvent,
    RangeUpdatedEvent,
    ReleasedAllocations,
    ReleasedEvent,
)
from generated_client.types import UNSET


def main(base_url: str) -> dict[str, object]:
    seen: dict[str, object] = {}
    with Client(base_url=base_url, raise_on_unexpected_status=True) as client:
        # A range: the service-cluster-ip-range of the cluster.
        created = create_range.sync(
            client=client, body=RangeCreate(name="default-ipv4", cidr="10.96.0.0/12")
        )
        assert isinstance(created, RangeRead), created
        seen["range"] = [created.name, created.family.value, created.size, created.static_band.size]

        # A dynamic allocation, and its retry: the same allocation, 200 instead of 201.
        dynamic = allocate.sync_detailed(client=client, body=AllocationCreate(owner="default/web"))
        retry = allocate.sync_detailed(client=client, body=AllocationCreate(owner="default/web"))
        assert isinstance(dynamic.parsed, AllocationRead), dynamic.parsed
        assert isinstance(retry.parsed, AllocationRead), retry.parsed
        seen["dynamic"] = [dynamic.status_code, retry.status_code, retry.parsed == dynamic.parsed]

        # A user-requested IP, with metadata.
        metadata = AllocationCreateMetadata()
        metadata["port"] = 53
        static = allocate.sync(
            client=client,
            body=AllocationCreate(
                owner="kube-system/kube-dns", ip="10.96.0.10", family=Family.IPV4, metadata=metadata
            ),
        )
        assert isinstance(static, AllocationRead), static
        seen["static"] = [static.ip, static.range_, "port" in static.metadata]

        # Someone else asking for the same IP is refused, and told who holds it.
        refused = allocate.sync_detailed(
            client=client, body=AllocationCreate(owner="default/dns-copy", ip="10.96.0.10")
        )
        conflict = refused.parsed
        assert isinstance(conflict, IPAlreadyAllocatedProblem), conflict
        seen["conflict"] = [refused.status_code, conflict.type_, conflict.holder]

        # Paging: one allocation per page, in address order, until the cursor runs out.
        addresses: list[str] = []
        cursor: str | None = None
        while True:
            page = list_allocations.sync(client=client, limit=1, cursor=cursor or UNSET)
            assert isinstance(page, AllocationList), page
            addresses += [allocation.ip for allocation in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        seen["pages"] = addresses

        # Release, guarded by the owner: another owner's name is refused, naming the holder.
        # The generated client types the empty body of a 204 as Any: the one Any of the session
        # (on the next four lines), never read.
        ip, holder = static.ip, static.owner
        wrong = release.sync_detailed(ip, client=client, owner="default/web")  # type: ignore[misc]
        mismatch = wrong.parsed if isinstance(wrong.parsed, OwnerMismatchProblem) else None  # type: ignore[misc]
        refused_status = wrong.status_code  # type: ignore[misc]
        right = release.sync_detailed(ip, client=client, owner=holder).status_code  # type: ignore[misc]
        assert mismatch is not None, refused_status
        seen["release"] = [refused_status, mismatch.holder, right]

        # Everything one owner holds, in one transaction.
        released = release_owner.sync(client=client, owner="default/web")
        assert isinstance(released, ReleasedAllocations), released
        seen["released"] = [allocation.owner for allocation in released.released]

        # The feed, polled: typed events, told apart by their class.
        feed = list_events.sync(client=client, since=0)
        assert isinstance(feed, EventList), feed
        events: list[list[object]] = []
        for event in feed.items:
            if isinstance(event, (RangeAddedEvent, RangeUpdatedEvent, RangeRemovedEvent)):
                events.append([event.type_, event.revision, event.range_.name])
            elif isinstance(event, (AllocatedEvent, ReleasedEvent)):
                events.append([event.type_, event.revision, event.allocation.ip])
            elif isinstance(event, BookmarkEvent):
                events.append([event.type_, event.revision])
            elif isinstance(event, ErrorEvent):
                events.append([event.type_, event.revision, event.problem.type_])
        seen["events"] = events
        seen["head"] = feed.revision
    return seen


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
