"""The metadata convention the agent programs: which ports of a VIP go to which endpoints.

An allocation whose metadata carries

    {"endpoints": [{"ip": "10.200.0.2", "port": 80, "target_port": 8080, "protocol": "tcp"}]}

gets ``VIP:80/tcp`` translated to ``10.200.0.2:8080``. ``port`` (the VIP's port) is required;
``target_port`` defaults to ``port`` and ``protocol`` (``tcp``, ``udp`` or ``sctp``) to ``tcp``.
Several endpoints with the same port and protocol share the VIP port's traffic. Entries that do not
follow the convention (no port, an address of the other family, a port out of range) are skipped,
so one malformed Service never keeps the others from being programmed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from allocator.domain.address import parse_address
from allocator.domain.errors import InvalidRequest

log = logging.getLogger(__name__)

PROTOCOLS = frozenset({"tcp", "udp", "sctp"})


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One VIP port and the endpoints ``(ip, target_port)`` its connections go to."""

    vip: str
    family: str
    protocol: str
    port: int
    endpoints: tuple[tuple[str, int], ...]


def service_ports(vip: str, family: str, metadata: object) -> list[ServicePort]:
    """Return the service ports the metadata of the allocation of ``vip`` asks for."""
    if not isinstance(metadata, dict) or not isinstance(metadata.get("endpoints"), list):
        return []
    grouped: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    for entry in metadata["endpoints"]:
        parsed = _endpoint(entry, family)
        if parsed is None:
            log.debug("skipping endpoint %r of %s: not of the convention", entry, vip)
            continue
        protocol, port, ip, target = parsed
        if (ip, target) not in grouped[(protocol, port)]:
            grouped[(protocol, port)].append((ip, target))
    return [
        ServicePort(vip, family, protocol, port, tuple(sorted(endpoints)))
        for (protocol, port), endpoints in grouped.items()
    ]


def _endpoint(entry: Any, family: str) -> tuple[str, int, str, int] | None:
    if not isinstance(entry, dict):
        return None
    port, target = entry.get("port"), entry.get("target_port", entry.get("port"))
    protocol = entry.get("protocol", "tcp")
    if not (isinstance(port, int) and isinstance(target, int) and protocol in PROTOCOLS):
        return None
    if not (_is_port(port) and _is_port(target) and isinstance(entry.get("ip"), str)):
        return None
    try:
        ip = parse_address(entry["ip"])
    except InvalidRequest:
        return None
    if (ip.version == 4) != (family == "IPv4"):
        return None
    return str(protocol), port, str(ip), target


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
