"""The node's dataplane as one nftables script: a pure function of the feed's state.

The script replaces the agent's own table in one transaction (``nft -f`` applies a file
atomically), so the kernel never holds half of an update:

    table inet clusterip_allocator
      set allocated_v4 / allocated_v6    the allocated VIPs
      set ranges_v4 / ranges_v6          the CIDRs of the ranges (interval sets)
      chain services                     VIP:port -> endpoints (DNAT, one rule per VIP port)
      chain nat_prerouting, nat_output   hooks that jump to services (traffic from pods, from the node)
      chain reject_unallocated           an address of a range that nobody holds: refused at once
      chain filter_input / forward / output   hooks that jump to it, before DNAT (priority -110)

Rejecting unallocated addresses makes a client fail fast (connection refused) instead of
waiting for a timeout, as kube-proxy does for a Service without endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from allocator.agent.endpoints import ServicePort, service_ports

TABLE = "clusterip_allocator"


class Scheduler(StrEnum):
    """How a connection picks one of several endpoints."""

    RANDOM = "random"
    ROUND_ROBIN = "rr"


@dataclass(frozen=True, slots=True)
class Dataplane:
    """What the node must program: ranges ``(cidr, family)``, allocated VIPs ``(ip, family)``,
    and the service ports of the VIPs that have endpoints."""

    ranges: tuple[tuple[str, str], ...]
    vips: tuple[tuple[str, str], ...]
    ports: tuple[ServicePort, ...]


_SUFFIX = {"IPv4": "v4", "IPv6": "v6"}
_ADDRESS_TYPE = {"IPv4": "ipv4_addr", "IPv6": "ipv6_addr"}
_MATCH = {"IPv4": "ip", "IPv6": "ip6"}


def render(
    dataplane: Dataplane, scheduler: Scheduler = Scheduler.RANDOM, table: str = TABLE
) -> str:
    """Return the nft script that makes ``table`` program exactly ``dataplane``.

    The first two lines create the table if it is absent and then delete it, so the script
    works whether or not an earlier version is loaded, and replaces it whole.
    """
    lines = [f"table inet {table}", f"delete table inet {table}", f"table inet {table} {{"]
    for family, suffix in _SUFFIX.items():
        vips = sorted({ip for ip, f in dataplane.vips if f == family}, key=_address_key)
        cidrs = sorted({cidr for cidr, f in dataplane.ranges if f == family}, key=_address_key)
        lines += _set(f"allocated_{suffix}", _ADDRESS_TYPE[family], vips, interval=False)
        lines += _set(f"ranges_{suffix}", _ADDRESS_TYPE[family], cidrs, interval=True)
    lines.append("  chain services {")
    lines += [f"    {_dnat(port, scheduler)}" for port in sorted(dataplane.ports, key=_port_key)]
    lines.append("  }")
    lines += _base_chain("nat_prerouting", "nat", "prerouting", "-100", "services")
    lines += _base_chain("nat_output", "nat", "output", "-100", "services")
    lines.append("  chain reject_unallocated {")
    for family, suffix in _SUFFIX.items():
        match = _MATCH[family]
        unallocated = f"{match} daddr @ranges_{suffix} {match} daddr != @allocated_{suffix}"
        lines.append(f"    {unallocated} meta l4proto tcp reject with tcp reset")
        lines.append(f"    {unallocated} reject with icmpx port-unreachable")
    lines.append("  }")
    for hook in ("input", "forward", "output"):
        lines += _base_chain(f"filter_{hook}", "filter", hook, "-110", "reject_unallocated")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _set(name: str, address_type: str, elements: list[str], *, interval: bool) -> list[str]:
    lines = [f"  set {name} {{", f"    type {address_type}"]
    if interval:
        lines.append("    flags interval")
    if elements:
        lines.append(f"    elements = {{ {', '.join(elements)} }}")
    return [*lines, "  }"]


def _base_chain(name: str, kind: str, hook: str, priority: str, target: str) -> list[str]:
    return [
        f"  chain {name} {{",
        f"    type {kind} hook {hook} priority {priority}; policy accept;",
        f"    jump {target}",
        "  }",
    ]


def _dnat(port: ServicePort, scheduler: Scheduler) -> str:
    match = _MATCH[port.family]
    rule = f"{match} daddr {port.vip} {port.protocol} dport {port.port} dnat {match} to"
    targets = port.endpoints
    if len(targets) == 1:
        ((ip, target_port),) = targets
        host = f"[{ip}]" if port.family == "IPv6" else ip
        return f"{rule} {host}:{target_port}"
    generator = "random" if scheduler == Scheduler.RANDOM else "inc"
    choices = ", ".join(f"{n} : {ip} . {target}" for n, (ip, target) in enumerate(targets))
    return f"{rule} numgen {generator} mod {len(targets)} map {{ {choices} }}"


def _address_key(text: str) -> tuple[int, str]:
    # Stable output (equal states give equal scripts, so an unchanged state is not re-applied).
    return (len(text), text)


def _port_key(port: ServicePort) -> tuple[str, str, int]:
    return (port.vip, port.protocol, port.port)


def dataplane_of(
    ranges: Iterable[tuple[str, str]], allocations: Iterable[tuple[str, str, object]]
) -> Dataplane:
    """Return the dataplane of ranges ``(cidr, family)`` and allocations ``(ip, family,
    metadata)`` (see ``allocator.agent.endpoints`` for the metadata convention)."""
    vips = []
    ports: list[ServicePort] = []
    for ip, family, metadata in allocations:
        vips.append((ip, family))
        ports += service_ports(ip, family, metadata)
    return Dataplane(tuple(ranges), tuple(vips), tuple(ports))
