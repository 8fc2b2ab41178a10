"""``benchmark.targets``: a run that loads several servers at once, each by its own clients.
The inventory checks it (servers, drivers, clients), and each client's load spec is its
target's (driver, server, password; preloading by each target's first client). Pure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.errors import InventoryError, UsageError
from coordinator.inventory.checks import check_references
from coordinator.inventory.loader import parse_inventory
from coordinator.inventory.schema import Inventory
from coordinator.run.loadspec import client_target, load_spec, target_of

EXAMPLE = Path(__file__).parents[2] / "inventory" / "two-clients.yaml"
TWO_TARGETS = """
  targets:
    - {server: rest, driver: http, clients: [client1]}
    - {server: redis, driver: builtin, clients: [client2]}
"""


def two_targets(targets: str = TWO_TARGETS) -> str:
    """The two-clients example with a REST server beside Redis and ``targets``."""
    text = EXAMPLE.read_text().replace(
        "servers:\n", "servers:\n  - {name: rest, host: server, port: 8000, kind: http}\n")
    return text.replace("benchmark:\n", "benchmark:" + targets, 1)


def problems(text: str) -> list[str]:
    """The inventory's errors, as `coord inventory check` says them (none: [])."""
    try:
        inventory = parse_inventory(text, "targets.yaml").inventory
    except InventoryError as exc:
        return str(exc).splitlines()
    return [str(p) for p in check_references(inventory) if p.severity == "error"]


def test_two_targets_each_loaded_by_its_own_clients_are_a_valid_inventory() -> None:
    assert problems(two_targets()) == []


@pytest.mark.parametrize(("targets", "expected"), [
    ("""
  targets:
    - {server: rest, driver: http, clients: [client1]}
    - {server: redys, driver: builtin, clients: [client2]}
""", "benchmark.targets[1].server: no server named 'redys' in servers (did you mean 'redis'?)"),
    ("""
  targets:
    - {server: rest, driver: builtin, clients: [client1]}
    - {server: redis, driver: builtin, clients: [client2]}
""", "benchmark.targets[0].driver: driver builtin cannot load server 'rest' of kind http"),
    ("""
  targets:
    - {server: rest, driver: http, clients: [client1, client2]}
    - {server: redis, driver: builtin, clients: [client2]}
""", "benchmark.targets[1].clients[0]: client 'client2' already loads benchmark.targets[0]"),
    ("""
  targets:
    - {server: rest, driver: http, clients: [client1]}
    - {server: redis, driver: builtin, clients: [server]}
""", "benchmark.targets[1].clients[0]: no client host named 'server'"),
    ("""
  targets:
    - {server: rest, driver: http, clients: [client1]}
    - {server: rest, driver: http, clients: [client2]}
""", "benchmark.targets[1].server: server 'rest' is already loaded by benchmark.targets[0]"),
    ("""
  targets:
    - {server: rest, driver: http, clients: [client1]}
    - {server: redis, driver: builtin, clients: [client1]}
""", "benchmark.targets: client host(s) client2 load no target"),
])
def test_a_target_that_cannot_be_loaded_is_refused_naming_its_field(targets: str,
                                                                    expected: str) -> None:
    found = problems(two_targets(targets))
    assert any(expected in problem for problem in found), found


def test_a_single_target_list_is_refused_by_the_schema() -> None:
    with pytest.raises(InventoryError, match=r"benchmark\.targets"):
        parse_inventory(two_targets("""
  targets:
    - {server: rest, driver: http, clients: [client1, client2]}
"""), "one.yaml")


def spec_of(inventory: Inventory, client: str, *, first_load: bool = True) -> dict[str, Any]:
    host = inventory.host(client)
    loads = client_target(inventory, host)
    spec: dict[str, Any] = json.loads(load_spec(
        inventory, host, password=f"{loads.server.name}-pw",
        first_load=first_load and loads.first_client))
    return spec


def test_each_client_gets_the_spec_of_its_own_target() -> None:
    text = two_targets().replace("kind: http}", "kind: http, http: {base_path: /v1}}")
    inventory = parse_inventory(text, "targets.yaml").inventory
    rest, redis = spec_of(inventory, "client1"), spec_of(inventory, "client2")
    assert (rest["driver"], rest["target"]["port"], rest["target"]["password"]) == (
        "http", 8000, "rest-pw")
    assert rest["params"]["base_path"] == "/v1"
    assert (redis["driver"], redis["target"]["port"], redis["target"]["password"]) == (
        "builtin", 6379, "redis-pw")
    assert redis["target"]["address"] == rest["target"]["address"] == "198.18.0.10"
    assert rest["timeline"] == redis["timeline"]  # one window, one T0 for every client


def test_only_the_first_client_of_each_builtin_target_preloads() -> None:
    inventory = parse_inventory(EXAMPLE.read_text().replace(
        "  - name: client2\n", "  - name: client3\n    address: 198.18.0.13\n    roles: "
        "[client]\n  - name: client2\n").replace(
        "servers:\n", "servers:\n  - {name: other, host: server, port: 6380}\n").replace(
        "benchmark:\n", """benchmark:
  targets:
    - {server: redis, driver: builtin, clients: [client2, client1]}
    - {server: other, driver: builtin, clients: [client3]}
""", 1).replace("    value_size: 32\n", "    value_size: 32\n    preload: true\n"),
        "targets.yaml").inventory
    preloads = {name: spec_of(inventory, name)["params"]["preload"]
                for name in ("client1", "client2", "client3")}
    assert preloads == {"client1": False, "client2": True, "client3": True}
    assert spec_of(inventory, "client3")["target"]["port"] == 6380
    assert target_of(inventory).name == "redis"  # the results' target: the first target's


def test_a_client_in_no_target_is_refused_naming_it() -> None:
    inventory = parse_inventory(two_targets(), "targets.yaml").inventory
    stranger = inventory.host("client1").model_copy(update={"name": "client9"})
    with pytest.raises(UsageError, match="client host 'client9' loads no target"):
        client_target(inventory, stranger)
