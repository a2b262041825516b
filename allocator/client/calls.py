"""The endpoints, described once; the sync and async clients only send them.

Each function returns a ``Call``: what to send and which statuses mean success. Any other status
raises ProblemError with the server's problem document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from allocator.client.errors import ProblemError


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: dict[str, Any] | None = None
    ok: tuple[int, ...] = (200,)


def _present(**params: Any) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}


def create_range(name: str, cidr: str, release_cooldown_seconds: int | None = None) -> Call:
    body = _present(name=name, cidr=cidr, release_cooldown_seconds=release_cooldown_seconds)
    return Call("POST", "/v1/ranges", json=body, ok=(201,))


def change_range(name: str, **changes: Any) -> Call:
    """A merge patch of the range: only the members given (not None) change."""
    return Call("PATCH", f"/v1/ranges/{quote(name, safe='')}", json=_present(**changes))


def list_ranges() -> Call:
    return Call("GET", "/v1/ranges")


def get_range(name: str) -> Call:
    return Call("GET", f"/v1/ranges/{quote(name, safe='')}")


def get_occupancy(name: str, cells: int = 0) -> Call:
    return Call(
        "GET", f"/v1/ranges/{quote(name, safe='')}/occupancy", _present(cells=cells or None)
    )


def delete_range(name: str) -> Call:
    return Call("DELETE", f"/v1/ranges/{quote(name, safe='')}", ok=(204,))


def allocate(
    owner: str,
    ip: str | None = None,
    range: str | None = None,
    family: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Call:
    body = _present(owner=owner, ip=ip, range=range, family=family, metadata=metadata)
    return Call("POST", "/v1/allocations", json=body, ok=(200, 201))


def allocate_many(requests: Sequence[Mapping[str, Any]], atomic: bool = True) -> Call:
    """Bodies of ``allocate`` in one transaction (see ``AllocatorClient.allocate_many``)."""
    return Call(
        "POST", "/v1/allocations:batch", json={"atomic": atomic, "requests": list(requests)}
    )


DUAL_STACK_POLICIES = {"RequireDualStack": True, "PreferDualStack": False}
"""Kubernetes' ipFamilyPolicy of a dual-stack Service, and whether its batch is atomic."""


def dual_stack(
    owner: str,
    policy: str = "RequireDualStack",
    families: Sequence[str] = ("IPv4", "IPv6"),
    ips: Mapping[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Call:
    """One allocation of each family for ``owner`` (``ips`` asks for an address in a family),
    atomic for ``RequireDualStack``, each on its own for ``PreferDualStack``."""
    if policy not in DUAL_STACK_POLICIES:
        raise ValueError(f"policy must be one of {', '.join(DUAL_STACK_POLICIES)}, not {policy!r}")
    requests = [
        _present(owner=owner, family=family, ip=(ips or {}).get(family), metadata=metadata)
        for family in families
    ]
    return allocate_many(requests, DUAL_STACK_POLICIES[policy])


def held(batch: Any) -> list[Any]:
    """Return the allocations of a dual-stack batch's answer; raise ProblemError with the first
    refusal when none was made (a PreferDualStack Service needs at least one family)."""
    allocations = [r["allocation"] for r in batch["results"] if "allocation" in r]
    if not allocations:
        problem = batch["results"][0]["problem"]
        raise ProblemError(problem["status"], problem)
    return allocations


def get_allocation(ip: str) -> Call:
    return Call("GET", f"/v1/allocations/{quote(ip, safe='')}")


def list_allocations(
    range: str | None = None,
    owner: str | None = None,
    family: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call:
    params = _present(range=range, owner=owner, family=family, limit=limit, cursor=cursor)
    return Call("GET", "/v1/allocations", params=params)


def release(ip: str, owner: str | None = None) -> Call:
    return Call("DELETE", f"/v1/allocations/{quote(ip, safe='')}", _present(owner=owner), ok=(204,))


def release_owner(owner: str) -> Call:
    return Call("DELETE", "/v1/allocations", {"owner": owner})


def result(call: Call, response: httpx.Response) -> Any:
    """Return the decoded body of a successful response; raise ProblemError otherwise."""
    if response.status_code not in call.ok:
        try:
            problem = response.json()
        except ValueError:
            problem = {"title": response.reason_phrase, "detail": response.text[:500]}
        if not isinstance(problem, dict):
            problem = {"detail": str(problem)}
        raise ProblemError(response.status_code, problem)
    return None if response.status_code == 204 else response.json()
