"""Hostile input: schemathesis generates requests from the server's own OpenAPI schema, valid and
invalid, for every operation and parameter, and checks each answer: never a 5xx, every status
declared, every body and content type as the schema says, invalid input refused, auth enforced.

The default run sends a few thousand requests; ``-m slow`` runs the long form.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from allocator.api.app import create_app
from allocator.domain.token import Role, new_token, record_for
from allocator.settings import Settings
from allocator.store.token_file import append_record
from tests.e2e.server import running_server

SHORT_EXAMPLES = 150
LONG_EXAMPLES = 1000
sent = {"requests": 0}
TOKEN = new_token()
"""The fuzzer's admin token, known to schemathesis as the bearer credential of the schema's
security scheme: requests that lack it on purpose are then its own negative cases."""
TOKENS = Path(tempfile.mkdtemp(prefix="fuzz-")) / "tokens"
append_record(TOKENS, record_for(TOKEN, "fuzzer", Role.ADMIN))
atexit.register(shutil.rmtree, TOKENS.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def fuzz_server(database_url: str) -> Iterator[str]:
    """A real server process with tokens, seeded with one range per family."""
    with running_server(database_url, ALLOCATOR_TOKENS_FILE=str(TOKENS)) as url:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for name, cidr in (("fuzz-v4", "10.200.0.0/16"), ("fuzz-v6", "fd00:200::/112")):
            httpx.post(f"{url}/v1/ranges", json={"name": name, "cidr": cidr}, headers=headers)
        yield url
    print(f"\nschemathesis: {sent['requests']} requests sent", file=sys.stderr)


# Schema-valid input may still be refused with 422: the schema gives the shape of an address or
# a CIDR, but only the domain knows that 10.0.0.5/8 has host bits set or that an address lies in
# no range; a revision beyond the head is a valid integer but 410. Every other check runs as schemathesis defines it.
CONFIG = schemathesis.Config.from_dict(
    {
        "auth": {"openapi": {"HTTPBearer": {"bearer": TOKEN}}},
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "410", "422", "429"]
            },
            # A refusal of another kind (410 beyond the head) is a refusal too.
            "negative_data_rejection": {
                "expected-statuses": [
                    "400",
                    "401",
                    "403",
                    "404",
                    "405",
                    "406",
                    "409",
                    "410",
                    "413",
                    "422",
                    "428",
                    "429",
                ]
            },
        },
    }
)

# The schema the server serves, built the same way without starting one (so tests can be
# collected before any server runs): with tokens, so every /v1 operation declares bearer auth.
schema = schemathesis.openapi.from_dict(
    create_app(
        Settings(database_url="postgresql://unused@127.0.0.1/unused", tokens_file=TOKENS)
    ).openapi(),
    config=CONFIG,
).exclude(path="/v1/watch")  # a stream (tests/api/test_watch_timeout.py covers its timeout)


def call(case: schemathesis.Case, url: str) -> None:
    sent["requests"] += 1
    case.call_and_validate(base_url=url)


@schema.parametrize()
@settings(max_examples=SHORT_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_survives_generated_input(
    case: schemathesis.Case, fuzz_server: str
) -> None:
    call(case, fuzz_server)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=LONG_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_survives_long_generated_input(
    case: schemathesis.Case, fuzz_server: str
) -> None:
    call(case, fuzz_server)
