"""Bounds on the free-form ``metadata`` object of an allocation.

Metadata is stored with every allocation and copied into every event about it, so its size is
paid again by every watcher: it is kept small (``MAX_BYTES`` as compact JSON) and shallow
(``MAX_DEPTH`` levels of objects and arrays). Text Postgres cannot store (the NUL character, lone
surrogates) is refused here too, rather than by the database as an error of ours.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

MAX_BYTES = 16_384
MAX_DEPTH = 8
LARGEST = 2**63 - 1


def check_metadata(metadata: dict[str, Any]) -> None:
    """Raise ValueError, saying which bound is passed, unless ``metadata`` is within them."""
    # Walked with an explicit stack: a recursive walk of hostile input is itself an attack surface.
    stack: list[tuple[Any, int]] = [(metadata, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise ValueError(f"metadata may nest at most {MAX_DEPTH} levels deep")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
            if isinstance(value, dict):
                stack.extend((key, depth) for key in value)
        elif isinstance(value, str) and "\x00" in value:
            raise ValueError("metadata may not contain the NUL character")
        elif isinstance(value, float) and not math.isfinite(value):
            # JSON has no NaN or Infinity; stored, they would come back as null.
            raise ValueError("metadata numbers must be finite (no NaN or Infinity)")
        elif isinstance(value, int | float) and not -LARGEST <= value <= LARGEST:
            # Postgres keeps 1e20 as the integer 100000000000000000000, which comes back too
            # large to encode: a number must survive the round trip unchanged in range.
            raise ValueError(f"metadata numbers must lie within ±{LARGEST} (64-bit)")
    try:
        size = len(orjson.dumps(metadata))
    except orjson.JSONEncodeError as exc:  # lone surrogates, numbers out of range
        raise ValueError(f"metadata cannot be stored as JSON: {exc}") from None
    if size > MAX_BYTES:
        raise ValueError(f"metadata is {size} bytes as JSON; at most {MAX_BYTES} are allowed")
