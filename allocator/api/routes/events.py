"""/v1/events (poll) and /v1/watch (stream): the feed that dataplane agents consume."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from allocator.api.deps import EngineDep, reader
from allocator.api.feed_response import FeedResponse
from allocator.api.limits import WatchLeaseDep
from allocator.domain.errors import InvalidRequest
from allocator.service import events
from allocator.service.frame import NDJSON, SSE, Wire
from allocator.service.tailer import Tailer
from allocator.service.watch import WatchOptions, open_watch

router = APIRouter(tags=["events"])

Revision = Annotated[int | None, Query(ge=0, le=2**63 - 1)]


@router.get("/v1/events", responses={200: {"content": {"application/json": {}}}})
async def list_events(
    request: Request,
    since: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> Response:
    """The events with revision > ``since``, in order, and the head revision (poll form).

    410 ``revision-compacted`` when they were deleted, ``revision-unknown`` beyond the head.
    """
    page = await events.list_events(reader(request), since, limit)
    body = b'{"items":[%s],"revision":%d}' % (b",".join(f.json for f in page.frames), page.head)
    return Response(body, media_type="application/json")


@router.get(
    "/v1/watch",
    responses={200: {"content": {NDJSON: {}, SSE: {}}, "description": "a stream of Events"}},
)
async def watch(
    request: Request,
    engine: EngineDep,
    lease: WatchLeaseDep,
    since: Revision = None,
    initial: bool = False,
    accept: Annotated[str, Header()] = NDJSON,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """Every event after ``since`` (or a list of the current state first, with ``initial``),
    then live events, as NDJSON or (``Accept: text/event-stream``) Server-Sent Events.

    ``Last-Event-ID`` (an SSE client reconnecting) takes the place of both. Neither given:
    live events from the current head on.
    """
    wire: Wire = "sse" if SSE in accept else "ndjson"
    tailer: Tailer = request.app.state.tailer
    options: WatchOptions = request.app.state.watch_options
    try:  # a refusal gives the watch slot back at once; a stream keeps it until it ends
        if last_event_id is not None:
            since, initial = _revision(last_event_id), False
        elif since is not None and initial:
            raise InvalidRequest("give either since or initial=true, not both", field="initial")
        elif since is None and not initial:
            since = (await events.head_of(reader(request))).head
        stream = await open_watch(engine, reader(request), tailer, since, options)
    except BaseException:
        lease.release()
        raise
    return FeedResponse(stream, wire, request.app.state.watch_send_timeout, on_close=lease.release)


def _revision(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise InvalidRequest(f"Last-Event-ID {text!r} is not a revision", field="last-event-id")
    return int(text)
