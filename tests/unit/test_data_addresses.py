"""A server's data address and a client's load source address: schema, spec, results. Pure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.drivers.errors import DriverError
from agent.drivers.spec import parse_spec
from coordinator.core.clock import ClockEstimate
from coordinator.core.errors import InventoryError
from coordinator.inventory.loader import load_inventory
from coordinator.inventory.schema import Host
from coordinator.results import agent_record, new_document, target_record
from coordinator.run.loadspec import load_spec

EXAMPLE = Path(__file__).parents[2] / "inventory" / "two-clients.yaml"


def test_the_target_defaults_to_the_server_hosts_ssh_address() -> None:
    inventory = load_inventory(EXAMPLE).inventory
    spec = parse_spec(load_spec(inventory, inventory.host("client1"), password=None))
    assert spec.target.address == "198.18.0.10"
    assert spec.target.source_address is None


def test_a_servers_own_address_is_the_target_and_ssh_keeps_the_hosts() -> None:
    inventory = load_inventory(EXAMPLE, ["servers[0].address=10.0.0.5"]).inventory
    assert inventory.host("server").address == "198.18.0.10"
    spec = parse_spec(load_spec(inventory, inventory.host("client1"), password=None))
    assert (spec.target.address, spec.target.port) == ("10.0.0.5", 6379)


def test_each_client_gets_its_own_load_source_address() -> None:
    inventory = load_inventory(
        EXAMPLE, ["hosts[1].load_source_address=10.0.1.11"]).inventory
    first, second = inventory.clients
    def source_of(client: Host) -> str | None:
        return parse_spec(load_spec(inventory, client, password=None)).target.source_address

    assert source_of(first) == "10.0.1.11"
    assert source_of(second) is None


def test_a_load_source_address_must_be_an_ip_address() -> None:
    with pytest.raises(InventoryError, match=r"hosts\[1\]\.load_source_address: must be an IP"):
        load_inventory(EXAMPLE, ["hosts[1].load_source_address=client.example"])


def test_a_server_address_may_be_a_dns_name_but_not_junk() -> None:
    loaded = load_inventory(EXAMPLE, ["servers[0].address=redis.internal"]).inventory
    assert loaded.data_address(loaded.servers[0]) == "redis.internal"
    with pytest.raises(InventoryError, match=r"servers\[0\]\.address"):
        load_inventory(EXAMPLE, ["servers[0].address=not an address"])


def test_an_empty_source_address_in_a_spec_is_refused() -> None:
    inventory = load_inventory(EXAMPLE).inventory
    spec = json.loads(load_spec(inventory, password=None))
    spec["target"]["source_address"] = ""
    with pytest.raises(DriverError, match=r"spec\.target\.source_address"):
        parse_spec(json.dumps(spec))


def test_results_record_the_target_address_used_and_the_source_addresses() -> None:
    inventory = load_inventory(EXAMPLE, [
        "servers[0].address=10.0.0.5", "hosts[2].load_source_address=10.0.1.12",
    ]).inventory
    clock = ClockEstimate(offset_ns=0, uncertainty_ns=1, rtt_ns=2, samples=1)
    agents = [agent_record("client1", clock, python="3.11", agent_version="0", bundle_hash=None)]
    document = new_document(inventory, agents,
                            target=target_record(inventory, inventory.servers[0]))
    assert document.target is not None
    assert (document.target.server, document.target.address, document.target.port) == (
        "redis", "10.0.0.5", 6379)
    assert document.target.source_addresses == {"client2": "10.0.1.12"}
    again = type(document).model_validate_json(document.model_dump_json())
    assert again.target == document.target
