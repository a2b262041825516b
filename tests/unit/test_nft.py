"""The agent's nftables script, rendered from a feed state without touching the kernel."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from allocator.agent.endpoints import ServicePort, service_ports
from allocator.agent.nft import Dataplane, Scheduler, dataplane_of, render
from allocator.agent.reconciler import script_of
from allocator.client.watch import Cursor

WEB = {
    "endpoints": [
        {"ip": "10.200.0.3", "port": 80, "target_port": 8080},
        {"ip": "10.200.0.2", "port": 80, "target_port": 8080},
        {"ip": "10.200.0.2", "port": 53, "protocol": "udp"},
    ]
}


def test_endpoints_group_by_vip_port_and_skip_what_breaks_the_convention() -> None:
    metadata = {
        "endpoints": [
            *WEB["endpoints"],
            {"ip": "10.200.0.9"},  # no port
            {"ip": "fd00::1", "port": 80},  # the other family
            {"ip": "10.200.0.9", "port": 70000},
            {"ip": "10.200.0.9", "port": True},
            {"ip": "not-an-ip", "port": 80},
            {"ip": "10.200.0.9", "port": 80, "protocol": "icmp"},
            "garbage",
        ]
    }
    assert sorted(service_ports("10.96.0.10", "IPv4", metadata), key=lambda p: p.port) == [
        ServicePort("10.96.0.10", "IPv4", "udp", 53, (("10.200.0.2", 53),)),
        ServicePort("10.96.0.10", "IPv4", "tcp", 80, (("10.200.0.2", 8080), ("10.200.0.3", 8080))),
    ]
    assert service_ports("10.96.0.10", "IPv4", {"endpoints": "nope"}) == []
    assert service_ports("10.96.0.10", "IPv4", None) == []


def plane() -> Dataplane:
    return dataplane_of(
        [("10.96.0.0/24", "IPv4"), ("fd00:10:96::/112", "IPv6")],
        [
            ("10.96.0.10", "IPv4", WEB),
            ("10.96.0.11", "IPv4", {}),
            ("fd00:10:96::a", "IPv6", {"endpoints": [{"ip": "fd00::2", "port": 443}]}),
        ],
    )


def test_the_script_replaces_the_table_whole_with_sets_dnat_and_rejects() -> None:
    script = render(plane(), Scheduler.RANDOM)
    lines = [line.strip() for line in script.splitlines()]
    assert lines[:3] == [
        "table inet clusterip_allocator",
        "delete table inet clusterip_allocator",
        "table inet clusterip_allocator {",
    ]
    assert "elements = { 10.96.0.10, 10.96.0.11 }" in lines
    assert "elements = { fd00:10:96::a }" in lines
    assert "elements = { 10.96.0.0/24 }" in lines
    assert (
        "ip daddr 10.96.0.10 tcp dport 80 dnat ip to numgen random mod 2"
        " map { 0 : 10.200.0.2 . 8080, 1 : 10.200.0.3 . 8080 }"
    ) in lines
    assert "ip daddr 10.96.0.10 udp dport 53 dnat ip to 10.200.0.2:53" in lines
    assert "ip6 daddr fd00:10:96::a tcp dport 443 dnat ip6 to [fd00::2]:443" in lines
    assert (
        "ip daddr @ranges_v4 ip daddr != @allocated_v4 meta l4proto tcp reject with tcp reset"
    ) in lines
    assert not any("10.96.0.11 tcp" in line for line in lines), "no endpoints, no DNAT"


def test_round_robin_and_stable_output() -> None:
    assert "numgen inc mod 2" in render(plane(), Scheduler.ROUND_ROBIN)
    reordered = Dataplane(plane().ranges[::-1], plane().vips[::-1], plane().ports[::-1])
    assert render(reordered) == render(plane()), "equal states, equal scripts"


def test_an_empty_dataplane_has_empty_sets() -> None:
    script = render(Dataplane((), (), ()))
    assert "elements" not in script
    assert "chain services {\n  }" in script


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed")
def test_nft_accepts_the_script() -> None:
    checked = subprocess.run(
        ["nft", "--check", "-f", "-"], input=render(plane()), capture_output=True, text=True
    )
    if "Operation not permitted" in checked.stderr:
        pytest.skip("checking a script needs CAP_NET_ADMIN")
    assert checked.returncode == 0, checked.stderr


def test_a_range_update_replaces_the_range_in_the_reject_set_of_the_next_script() -> None:
    """The agent renders each script from the watch's state: after a RANGE_UPDATED the range's
    old CIDR is gone from its interval set and the new one is there."""
    cursor = Cursor()
    cursor.connected()
    old = {"name": "r", "cidr": "10.96.1.0/24", "family": "IPv4"}
    other = {"name": "s", "cidr": "10.97.0.0/24", "family": "IPv4"}
    for added in (old, other):
        cursor.apply({"type": "RANGE_ADDED", "revision": 2, "range": added})  # type: ignore[typeddict-item]
    cursor.apply({"type": "BOOKMARK", "revision": 2, "initial_end": True})
    assert "elements = { 10.96.1.0/24, 10.97.0.0/24 }" in script_of(cursor.state, Scheduler.RANDOM)
    for cidr, expected in (("10.96.0.0/22", "10.96.0.0/22"), ("10.96.2.0/23", "10.96.2.0/23")):
        grown = {**old, "cidr": cidr}
        cursor.apply({"type": "RANGE_UPDATED", "revision": 3, "range": grown})  # type: ignore[typeddict-item]
        script = script_of(cursor.state, Scheduler.RANDOM)
        assert f"elements = {{ {expected}, 10.97.0.0/24 }}" in script
        assert "10.96.1.0/24" not in script
