"""Client load for the fault tests, and what the clients can prove afterwards.

Each client allocates (dynamic or a user-requested address), releases by address (guarded by
owner) and releases by owner, on small ranges, and writes down what the server acknowledged and
when. A request whose outcome is unknown (503, a dropped connection, a killed replica) is sent
again with the same owner until it gets a definite answer, trying the other replicas too.

Afterwards:

- ``check_no_double_holding``: from the clients' own records, no address was ever held by two
  owners at once. An owner holds an address at least from the acknowledgement of its allocation
  until it sent the first release of it, so those intervals must not overlap per address;
- ``check_acknowledged_kept``: every acknowledged allocation that was never released is in the
  store, with its owner, and every acknowledged release is gone;
- ``replay_event_log``: the allocations rebuilt from the ``event`` table alone match the
  ``allocation`` table (and no ALLOCATED event names an address already held).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import netaddr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

DEFINITE = {200, 201, 204, 404, 409, 422}
UNKNOWN_OUTCOME = {502, 503, 504}


@dataclass
class Holding:
    ip: str
    owner: str
    acknowledged_at: float
    release_sent_at: float = math.inf
    release_acknowledged: bool = False


@dataclass
class Ledger:
    holdings: list[Holding] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    retry_after_missing: int = 0
    unknown_owners: set[str] = field(default_factory=set)
    transport_errors: int = 0
    operations: int = 0

    def acknowledged(self) -> int:
        return len(self.holdings)


class Replicas:
    """The servers a client may ask, moving on to the next when one does not answer."""

    def __init__(self, urls: list[str], http: httpx.AsyncClient, ledger: Ledger) -> None:
        self.urls = urls
        self.http = http
        self.ledger = ledger

    async def send(
        self, method: str, path: str, start: int, **kwargs: object
    ) -> tuple[httpx.Response, float]:
        """Send until an answer whose outcome is definite; return it and when the final attempt
        was sent. Raises TimeoutError after a bounded number of attempts."""
        for attempt in range(200):
            url = self.urls[(start + attempt) % len(self.urls)]
            sent_at = time.monotonic()
            try:
                response = await self.http.request(method, url + path, **kwargs)  # type: ignore[arg-type]
            except httpx.TransportError:
                self.ledger.transport_errors += 1
                await asyncio.sleep(0.05)
                continue
            self.ledger.statuses[response.status_code] += 1
            if response.status_code in UNKNOWN_OUTCOME:
                if "retry-after" not in response.headers:
                    self.ledger.retry_after_missing += 1
                await asyncio.sleep(0.1)
                continue
            assert response.status_code in DEFINITE, response.text
            return response, sent_at
        raise TimeoutError(f"{method} {path}: no definite answer in 200 attempts")


async def client(
    number: int,
    replicas: Replicas,
    operations: int,
    static_pool: list[str],
    deadline: float = math.inf,
) -> None:
    """Run ``operations`` random operations (or until ``deadline``)."""
    ledger = replicas.ledger
    rng = random.Random(number)
    held: list[Holding] = []
    serial = 0
    for _ in range(operations):
        if time.monotonic() > deadline:
            return
        ledger.operations += 1
        choice = rng.random()
        if choice < 0.55 or not held:
            serial += 1
            owner = f"c{number}-{serial}"
            body: dict[str, object] = {"owner": owner}
            if choice < 0.15:
                body["ip"] = rng.choice(static_pool)
            response, _ = await replicas.send("POST", "/v1/allocations", number, json=body)
            if response.status_code in (200, 201):
                holding = Holding(response.json()["ip"], owner, time.monotonic())
                ledger.holdings.append(holding)
                held.append(holding)
            else:
                assert response.status_code == 409, response.text
        elif choice < 0.85:
            holding = held.pop(rng.randrange(len(held)))
            holding.release_sent_at = time.monotonic()
            response, _ = await replicas.send(
                "DELETE", f"/v1/allocations/{holding.ip}", number, params={"owner": holding.owner}
            )
            # 404, or 409 owner-mismatch once someone else got it: an earlier attempt whose
            # answer was lost had released it.
            assert response.status_code in (204, 404, 409), response.text
            if response.status_code == 409:
                assert response.json()["type"] == "owner-mismatch", response.text
            holding.release_acknowledged = True
        else:
            holding = held.pop(rng.randrange(len(held)))
            holding.release_sent_at = time.monotonic()
            response, _ = await replicas.send(
                "DELETE", "/v1/allocations", number, params={"owner": holding.owner}
            )
            assert response.status_code == 200, response.text
            holding.release_acknowledged = True


def check_no_double_holding(ledger: Ledger) -> None:
    by_ip: dict[str, list[Holding]] = {}
    for holding in ledger.holdings:
        by_ip.setdefault(holding.ip, []).append(holding)
    for ip, holdings in by_ip.items():
        holdings.sort(key=lambda h: h.acknowledged_at)
        for before, after in itertools.pairwise(holdings):
            assert before.release_sent_at <= after.acknowledged_at, (
                f"{ip} acknowledged to {after.owner} while {before.owner} held it"
            )


async def stored_allocations(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT ip, owner FROM allocation"))).all()
    return {str(netaddr.IPAddress(str(row.ip))): row.owner for row in rows}


async def lost_writes(engine: AsyncEngine, ledger: Ledger) -> list[str]:
    """Return the acknowledged allocations and releases the store does not show, each said."""
    stored = await stored_allocations(engine)
    by_owner = {owner: ip for ip, owner in stored.items()}
    lost = []
    for holding in ledger.holdings:
        if holding.release_acknowledged:
            if holding.owner in by_owner:
                lost.append(f"released {holding.ip} still held")
        elif holding.release_sent_at == math.inf and stored.get(holding.ip) != holding.owner:
            lost.append(f"acknowledged {holding.ip} lost")
    return lost


async def check_acknowledged_kept(engine: AsyncEngine, ledger: Ledger) -> None:
    lost = await lost_writes(engine, ledger)
    assert not lost, f"{len(lost)} acknowledged writes lost, the first: {lost[0]}"


async def replay_event_log(engine: AsyncEngine) -> dict[str, str]:
    """Return the allocations (ip -> owner) that the event log alone describes, asserting that
    every event applies cleanly to the state before it."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(text("SELECT type, payload FROM event ORDER BY revision"))
        ).all()
    state: dict[str, str] = {}
    for row in rows:
        payload = row.payload if isinstance(row.payload, dict) else json.loads(row.payload)
        allocation = payload.get("allocation")
        if row.type == "ALLOCATED":
            assert allocation["ip"] not in state, f"{allocation['ip']} allocated twice in the log"
            state[allocation["ip"]] = allocation["owner"]
        elif row.type == "RELEASED":
            assert state.pop(allocation["ip"]) == allocation["owner"]
    assert state == await stored_allocations(engine), "the log and the table agree"
    return state
