"""``benchmark.targets``: a run that loads several servers at once, each by its own clients.
The inventory checks it (servers, drivers, clients), and `coord run` refuses it in one line
before touching any host: running it is not built yet. Pure (the CLI in this process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.core.errors import InventoryError, UsageError
from coordinator.inventory.checks import check_references
from coordinator.inventory.loader import parse_inventory
from coordinator.run.loadspec import load_spec
from tests.conftest import RunCoord

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


def test_the_load_spec_refuses_several_targets_saying_what_to_do() -> None:
    inventory = parse_inventory(two_targets(), "targets.yaml").inventory
    with pytest.raises(UsageError, match=r"^benchmark.targets: a run that loads several servers "
                       r"at once \(rest, redis\) is not supported yet; run one inventory per "
                       r"server"):
        load_spec(inventory, password=None)


def test_coord_run_refuses_several_targets_in_one_line_before_any_host(
        run_coord: RunCoord, tmp_path: Path) -> None:
    inventory = tmp_path / "targets.yaml"
    inventory.write_text(two_targets())
    result = run_coord("run", "-i", str(inventory), "--out", str(tmp_path / "r"))
    assert result.status == 2
    assert result.stderr.strip().startswith("benchmark.targets: a run that loads several")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
