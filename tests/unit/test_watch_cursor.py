"""The client watch's cursor: what it asks for next, and how events change its state."""

from __future__ import annotations

import pytest

from allocator.client.errors import ProblemError
from allocator.client.watch import Backoff, Cursor, Event, Reconnect


def allocated(revision: int, ip: str, owner: str, kind: str = "ALLOCATED") -> Event:
    allocation = {"ip": ip, "owner": owner, "family": "IPv4", "range": "r", "metadata": {}}
    return {"type": kind, "revision": revision, "allocation": allocation}  # type: ignore[typeddict-item]


def listed(cursor: Cursor, at: int, ips: list[str]) -> None:
    cursor.connected()
    cursor.apply({"type": "RANGE_ADDED", "revision": at, "range": {"name": "r"}})  # type: ignore[typeddict-item]
    for ip in ips:
        cursor.apply(allocated(at, ip, "old"))
    cursor.apply({"type": "BOOKMARK", "revision": at, "initial_end": True})


def test_the_list_becomes_the_state_at_once_at_its_end() -> None:
    cursor = Cursor()
    assert cursor.params() == {"initial": "true"}
    cursor.connected()
    cursor.apply(allocated(5, "10.0.0.1", "a"))
    assert cursor.state.revision == 0 and not cursor.state.allocations, "never half a list"
    cursor.apply({"type": "BOOKMARK", "revision": 5, "initial_end": True})
    assert cursor.state.revision == 5 and list(cursor.state.allocations) == ["10.0.0.1"]
    assert cursor.params() == {"since": "5"}


def test_live_events_apply_one_by_one_and_bookmarks_advance_the_resume_point() -> None:
    cursor = Cursor()
    listed(cursor, 5, ["10.0.0.1"])
    cursor.connected()
    cursor.apply(allocated(6, "10.0.0.1", "old", "RELEASED"))
    cursor.apply(allocated(7, "10.0.0.1", "new"))
    assert cursor.state.allocations["10.0.0.1"]["owner"] == "new"
    frozen = cursor.snapshot()
    cursor.apply({"type": "BOOKMARK", "revision": 9})
    cursor.apply(allocated(10, "10.0.0.1", "new", "RELEASED"))
    assert cursor.params() == {"since": "10"} and not cursor.state.allocations
    assert list(frozen.allocations) == ["10.0.0.1"] and frozen.revision == 7


def test_a_410_lists_again_and_the_new_list_replaces_everything() -> None:
    cursor = Cursor()
    listed(cursor, 5, ["10.0.0.1", "10.0.0.2"])
    with pytest.raises(Reconnect):
        cursor.check(410, b'{"type": "revision-compacted"}')
    assert cursor.params() == {"initial": "true"}
    listed(cursor, 40, ["10.0.0.3"])
    assert list(cursor.state.allocations) == ["10.0.0.3"], "what vanished meanwhile is gone"


def test_errors_resume_or_list_again_and_refusals_raise() -> None:
    cursor = Cursor(revision=12)
    cursor.connected()
    with pytest.raises(Reconnect):
        cursor.apply({"type": "ERROR", "revision": 12, "problem": {"type": "revision-compacted"}})
    assert cursor.params() == {"since": "12"}, "a watcher cut off resumes where it was"
    with pytest.raises(Reconnect):
        cursor.apply({"type": "ERROR", "revision": 12, "problem": {"type": "revision-unknown"}})
    assert cursor.params() == {"initial": "true"}, "a reset log is listed again"
    for status in (503, 429):
        with pytest.raises(Reconnect):
            cursor.check(status, b"")
    with pytest.raises(ProblemError) as refused:
        cursor.check(401, b'{"type": "unauthorized", "detail": "no token"}')
    assert refused.value.type == "unauthorized"


def test_live_only_starts_at_the_head() -> None:
    cursor = Cursor(initial=False)
    assert cursor.params() == {}
    cursor.connected()
    cursor.apply({"type": "BOOKMARK", "revision": 30})
    assert cursor.params() == {"since": "30"}


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(first=0.1, cap=1.0)
    delays = [backoff.next_delay() for _ in range(20)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert max(delays[10:]) > 0.1, "it grew"
    backoff.reset()
    assert backoff.next_delay() <= 0.1
