"""The Event objects of the feed, as schemas: one per ``type``, and the poll form's page.

The feed's routes send events as the log stores them, encoded once for every watcher; these
models are what the schema promises each one is (the API tests check the events they get against
them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, RootModel
from pydantic.json_schema import SkipJsonSchema

from allocator.api.problem_schemas import MODELS
from allocator.api.schemas import (
    ALLOCATION_EXAMPLE,
    RANGE_EXAMPLE,
    AllocationRead,
    RangeRead,
    absent_or,
    examples,
)
from allocator.domain.errors import RevisionCompacted, RevisionUnknown
from allocator.service.feed.frame import NDJSON, SSE


class EventBase(BaseModel):
    type: str
    revision: int = Field(
        description="the revision of the change; in the list of initial=true, the revision "
        "the list was read at"
    )


class AllocatedEvent(EventBase):
    """An address was allocated (in the list of initial=true: is held)."""

    model_config = examples({"type": "ALLOCATED", "revision": 43, "allocation": ALLOCATION_EXAMPLE})

    type: Literal["ALLOCATED"]
    allocation: AllocationRead


class ReleasedEvent(EventBase):
    """An address was released: stop forwarding to it."""

    model_config = examples({"type": "RELEASED", "revision": 44, "allocation": ALLOCATION_EXAMPLE})

    type: Literal["RELEASED"]
    allocation: AllocationRead = Field(description="the allocation as it was")


class RangeAddedEvent(EventBase):
    """A range was created (in the list of initial=true: exists)."""

    model_config = examples({"type": "RANGE_ADDED", "revision": 1, "range": RANGE_EXAMPLE})

    type: Literal["RANGE_ADDED"]
    range: RangeRead


class RangeUpdatedEvent(EventBase):
    """A range was changed: replace the one held."""

    model_config = examples({"type": "RANGE_UPDATED", "revision": 45, "range": RANGE_EXAMPLE})

    type: Literal["RANGE_UPDATED"]
    range: RangeRead = Field(description="the range as it is now")


class RangeRemovedEvent(EventBase):
    """A range was deleted."""

    model_config = examples({"type": "RANGE_REMOVED", "revision": 46, "range": RANGE_EXAMPLE})

    type: Literal["RANGE_REMOVED"]
    range: RangeRead = Field(description="the range as it was")


EPOCH_EXAMPLE = "1-6f1c0d3e-4d8f-4a57-9c55-3c1e6f0c8d2a"
EPOCH_DESCRIPTION = (
    "the epoch of the log's history that revision belongs to (it changes when a failover of the "
    "database starts a new timeline); send it back with since when resuming"
)


class BookmarkEvent(EventBase):
    """Nothing changed up to ``revision`` (sent at least every few seconds while idle, as soon
    as a watch is live, and before the first event of a new epoch): with its ``epoch``, a
    client's resume point."""

    model_config = examples(
        {"type": "BOOKMARK", "revision": 46, "epoch": EPOCH_EXAMPLE},
        {"type": "BOOKMARK", "revision": 42, "epoch": EPOCH_EXAMPLE, "initial_end": True},
    )

    type: Literal["BOOKMARK"]
    epoch: str = Field(description=EPOCH_DESCRIPTION)
    initial_end: bool | SkipJsonSchema[None] = absent_or(
        "true on the bookmark that ends the list of initial=true (absent otherwise)"
    )


ErrorProblem: Any = Annotated[
    MODELS[RevisionCompacted] | MODELS[RevisionUnknown], Field(discriminator="type")
]


class ErrorEvent(EventBase):
    """The last event of a watch the server abandons: resume, or list again, as the problem
    says."""

    model_config = examples(
        {
            "type": "ERROR",
            "revision": 46,
            "problem": {
                "type": "revision-compacted",
                "title": "Revision compacted",
                "status": 410,
                "detail": "the watcher fell more than 5000 events behind the feed; "
                "resume from the last revision received",
            },
        }
    )

    type: Literal["ERROR"]
    problem: ErrorProblem


class Event(RootModel[Any]):
    """One event of the feed; ``type`` says which."""

    root: Annotated[
        AllocatedEvent
        | ReleasedEvent
        | RangeAddedEvent
        | RangeUpdatedEvent
        | RangeRemovedEvent
        | BookmarkEvent
        | ErrorEvent,
        Field(discriminator="type"),
    ]


class EventList(BaseModel):
    """A page of the poll form."""

    model_config = examples(
        {
            "items": [{"type": "ALLOCATED", "revision": 43, "allocation": ALLOCATION_EXAMPLE}],
            "revision": 43,
            "epoch": EPOCH_EXAMPLE,
        }
    )

    items: list[Event] = Field(description="the events after since, in revision order")
    revision: int = Field(
        description="the head revision the page was read at; poll on with since set to the last "
        "item's revision (to this one when there are no items)"
    )
    epoch: str = Field(description=EPOCH_DESCRIPTION)


EVENT_REF = {"$ref": "#/components/schemas/Event"}

STREAM_CONTENT = {
    # OpenAPI 3.1 has no item schema for streams, and tools read the schema of a stream's media
    # type in different ways: the body as a whole is text, and ``x-itemSchema`` (``itemSchema``
    # of OpenAPI 3.2) describes each item.
    NDJSON: {
        "schema": {"type": "string", "description": "newline-delimited JSON: one Event per line"},
        "x-itemSchema": EVENT_REF,
    },
    SSE: {
        "schema": {
            "type": "string",
            "description": "Server-Sent Events: `id:` the revision, `data:` one Event",
        },
        "x-itemSchema": {
            "type": "object",
            "required": ["id", "data"],
            "properties": {
                "id": {"type": "string", "description": "the event's revision"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": EVENT_REF,
                },
            },
        },
    },
}
"""The media types of the watch stream (see its description)."""
