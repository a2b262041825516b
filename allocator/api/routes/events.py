"""/v1/events (poll) and /v1/watch (stream): the feed that dataplane agents consume."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from allocator.api.deps import EngineDep
from allocator.api.event_schemas import STREAM_CONTENT, EventList
from allocator.api.feed_response import FeedResponse
from allocator.api.limits import WatchLeaseDep
from allocator.api.problem_schemas import refusals
from allocator.domain import errors
from allocator.domain.errors import InvalidRequest
from allocator.service.feed import events
from allocator.service.feed.frame import SSE, Wire
from allocator.service.feed.shared_reads import SharedReads
from allocator.service.feed.tailer import Tailer
from allocator.service.feed.watch import WatchOptions, open_watch

router = APIRouter(tags=["events"])

SINCE = "the events after this revision (the last one the client has)"
EPOCH = (
    "the epoch of `since`: the `epoch` of the last BOOKMARK (or poll answer) the client got; a"
    " revision the database lost in a failover is then refused (410 revision-unknown) instead of"
    " answered with other events under the same numbers"
)
Epoch = Annotated[str | None, Query(max_length=64, description=EPOCH)]


@router.get(
    "/v1/events",
    operation_id="listEvents",
    summary="Poll the event feed",
    response_model=EventList,
    responses=refusals(errors.RevisionCompacted, errors.RevisionUnknown),
)
async def list_events(
    engine: EngineDep,
    since: Annotated[int, Query(ge=0, le=2**63 - 1, description=SINCE)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000, description="at most this many")] = 500,
    epoch: Epoch = None,
) -> Response:
    """The events with revision > `since`, in order, the head revision and its epoch. A `since`
    whose events were deleted is `revision-compacted`, one beyond the head (or lost in a
    failover, given its `epoch`) `revision-unknown`: list again (`initial=true` on the watch, or
    the lists) and poll on from there."""
    events.check_epoch(epoch)
    page = await events.list_events(engine, since, limit, epoch)
    items = b",".join(f.json for f in page.frames)
    body = b'{"items":[%s],"revision":%d,"epoch":"%s"}' % (items, page.head, page.epoch.encode())
    return Response(body, media_type="application/json")


@router.get(
    "/v1/watch",
    operation_id="watch",
    summary="Watch the event feed",
    status_code=200,
    response_class=FeedResponse,
    responses={
        200: {"description": "A stream of Events, until the timeout", "content": STREAM_CONTENT},
        **refusals(errors.RevisionCompacted, errors.RevisionUnknown, errors.TooManyWatchers),
    },
)
async def watch(
    request: Request,
    lease: WatchLeaseDep,
    since: Annotated[int | None, Query(ge=0, le=2**63 - 1, description=SINCE)] = None,
    epoch: Epoch = None,
    initial: Annotated[
        bool,
        Query(description="first the current state (instead of since), then the events after it"),
    ] = False,
    timeout_seconds: Annotated[
        int | None, Query(ge=1, description="end the stream after this many seconds")
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(description="an SSE client resuming: the id (revision) of the last event it got"),
    ] = None,
) -> Response:
    """Every event after `since`, in order, then live events as they commit, until the stream's
    timeout (`timeout_seconds`, else the server's own: minutes); then the client resumes from
    the last revision it got. A `BOOKMARK` with the current revision comes when the stream is
    live and after a few idle seconds; each names the `epoch` of its revision (resume with
    `since` and `epoch`).

    With `initial=true`, first a `RANGE_ADDED` for every range and an `ALLOCATED` for every
    allocation at one consistent revision S, then a `BOOKMARK` with `initial_end` at S, then
    every event after S: list and watch with no gap. Neither: live events from the head on.

    Newline-delimited JSON, one Event per line; with `Accept: text/event-stream`, Server-Sent
    Events whose `id` is the revision (`Last-Event-ID` then resumes, in place of `since`).
    A watcher that falls too far behind gets an `ERROR` event and the stream ends.
    """
    wire: Wire = "sse" if SSE in request.headers.get("accept", "") else "ndjson"
    tailer: Tailer = request.app.state.tailer
    reads: SharedReads = request.app.state.shared_reads
    options: WatchOptions = request.app.state.watch_options
    try:  # a refusal gives the watch slot back at once; a stream keeps it until it ends
        if last_event_id is not None:
            since, initial = _revision(last_event_id), False
        elif since is not None and initial:
            raise InvalidRequest("give either since or initial=true, not both", field="initial")
        elif since is None and not initial:
            bounds = await reads.head()
            since, epoch = bounds.head, bounds.epoch
        events.check_epoch(epoch)
        stream = await open_watch(reads, tailer, since, epoch, options, timeout_seconds)
    except BaseException:
        lease.release()
        raise
    return FeedResponse(stream, wire, request.app.state.watch_send_timeout, on_close=lease.release)


def _revision(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise InvalidRequest(f"Last-Event-ID {text!r} is not a revision", field="last-event-id")
    return int(text)
