"""The answer of ``POST /v1/allocations:batch``: one result per request, and the head after it."""

from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from allocator.api.problem_schemas import Problem
from allocator.api.schemas import ALLOCATION_EXAMPLE, AllocationRead, absent_or, examples

V6_EXAMPLE = {
    **ALLOCATION_EXAMPLE,
    "ip": "fd00:10:96::2a",
    "family": "IPv6",
    "range": "default-ipv6",
}


class BatchResult(BaseModel):
    status: int = Field(description="what POST /v1/allocations would have answered: 201, 200...")
    allocation: AllocationRead | SkipJsonSchema[None] = absent_or("the allocation (201, 200)")
    problem: Problem | SkipJsonSchema[None] = absent_or("why it was refused (4xx)")


class BatchResults(BaseModel):
    model_config = examples(
        {
            "results": [
                {"status": 201, "allocation": {**V6_EXAMPLE, "revision": 43}},
                {"status": 200, "allocation": ALLOCATION_EXAMPLE},
                {
                    "status": 409,
                    "problem": {
                        "type": "range-full",
                        "title": "No free address",
                        "status": 409,
                        "detail": "no free address in range 'small'",
                    },
                },
            ],
            "revision": 43,
        }
    )

    results: list[BatchResult] = Field(description="one per request, in order")
    revision: int = Field(description="the head revision after the batch")
