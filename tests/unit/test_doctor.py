"""`coord doctor`'s verdicts from gathered facts. Pure."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.doctor.verdicts import (
    MIN_FREE_DISK,
    MIN_FREE_MEMORY,
    HostFacts,
    diagnose,
    endpoints,
    needed_tools,
)
from coordinator.inventory.loader import load_inventory
from coordinator.inventory.schema import Inventory

EXAMPLE = Path(__file__).parents[2] / "inventory" / "two-clients.yaml"
TARGET = "198.18.0.10:6379"


def inventory(*overrides: str) -> Inventory:
    return load_inventory(EXAMPLE, list(overrides)).inventory


def healthy(inv: Inventory, name: str) -> HostFacts:
    host = inv.host(name)
    return HostFacts(
        python=(3, 11, 2), free_memory=MIN_FREE_MEMORY * 4, free_disk=MIN_FREE_DISK * 4,
        disk_path="/home/u", tools=dict.fromkeys(needed_tools(inv, host), True),
        reach=dict.fromkeys(endpoints(inv), None) if "client" in host.roles else {},
    )


def all_healthy(inv: Inventory) -> dict[str, HostFacts]:
    return {host.name: healthy(inv, host.name) for host in inv.hosts}


def test_a_healthy_fleet_has_no_findings() -> None:
    inv = inventory()
    assert diagnose(inv, all_healthy(inv)) == []


def test_tools_follow_the_driver_and_the_baseline() -> None:
    inv = inventory()
    assert needed_tools(inv, inv.host("client1")) == ["netperf"]
    assert needed_tools(inv, inv.host("server")) == ["netserver"]
    inv = inventory("benchmark.driver=memtier", "baseline.enabled=false")
    assert needed_tools(inv, inv.host("client1")) == ["memtier_benchmark"]
    assert needed_tools(inv, inv.host("server")) == []


def test_clients_must_reach_the_data_address_not_the_ssh_one() -> None:
    assert endpoints(inventory("servers[0].address=10.0.0.5")) == ["10.0.0.5:6379"]
    assert endpoints(inventory("servers[0].address=fd00::5")) == ["[fd00::5]:6379"]


@pytest.mark.parametrize(("host", "change", "check", "words"), [
    ("client1", {"forwarding_error": "administratively prohibited"}, "tcp forwarding",
     "AllowTcpForwarding"),
    ("server", {"sftp_error": "subsystem request failed"}, "sftp", "Subsystem sftp"),
    ("client2", {"python": (3, 8, 10)}, "python", ">= 3.10"),
    ("client2", {"python": None, "python_error": "exited 127"}, "python", "hosts[].python"),
    ("server", {"free_memory": 10 * 2**20}, "memory", "free at least"),
    ("server", {"free_disk": 1}, "disk", "agent.cache_dir"),
    ("client1", {"tools": {"netperf": False}}, "tools", "baseline.enabled: false"),
    ("client2", {"reach": {TARGET: "connection refused"}}, "target", "servers[].address/port"),
    ("client2", {"reach": {}}, "target", "servers[].address/port"),
])
def test_each_problem_is_one_finding_with_its_fix(host: str, change: dict[str, object],
                                                  check: str, words: str) -> None:
    inv = inventory()
    facts = all_healthy(inv)
    facts[host] = replace(facts[host], **change)  # type: ignore[arg-type]
    findings = diagnose(inv, facts)
    assert [(f.host, f.check) for f in findings] == [(host, check)]
    assert words in findings[0].fix


def test_an_unreachable_host_is_one_finding_and_nothing_else() -> None:
    inv = inventory()
    facts = all_healthy(inv)
    facts["client1"] = HostFacts(ssh_error="cannot connect to 198.18.0.11:22: refused")
    findings = diagnose(inv, facts)
    assert [(f.host, f.check) for f in findings] == [("client1", "ssh")]
    assert "refused" in findings[0].problem


def test_the_server_host_is_not_asked_to_reach_the_target() -> None:
    inv = inventory()
    facts = all_healthy(inv)
    facts["server"] = replace(facts["server"], reach={TARGET: "connection refused"})
    assert diagnose(inv, facts) == []


@given(memory=st.integers(0, 2 * MIN_FREE_MEMORY), disk=st.integers(0, 2 * MIN_FREE_DISK))
def test_memory_and_disk_are_flagged_exactly_below_their_minimum(memory: int, disk: int) -> None:
    inv = inventory()
    facts = all_healthy(inv)
    facts["client1"] = replace(facts["client1"], free_memory=memory, free_disk=disk)
    checks = {f.check for f in diagnose(inv, facts)}
    assert ("memory" in checks) == (memory < MIN_FREE_MEMORY)
    assert ("disk" in checks) == (disk < MIN_FREE_DISK)
