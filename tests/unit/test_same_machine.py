"""Hosts at one address are one machine: refused, unless each says so and the run is marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.core.errors import InventoryError
from coordinator.inventory.loader import parse_inventory
from coordinator.results import MARKS
from coordinator.run.runner import run_marks
from tests.conftest import RunCoord
from tests.unit.test_inventory_errors import VALID_HEAD

TWIN = "  - name: client2\n    address: {address}\n    roles: [client]\n{extra}"


def with_twin(address: str = "198.18.0.11", extra: str = "", first_extra: str = "") -> str:
    head = VALID_HEAD.replace("    roles: [client]\n", "    roles: [client]\n" + first_extra, 1)
    return head.replace("servers:\n", TWIN.format(address=address, extra=extra) + "servers:\n")


def test_two_hosts_at_one_address_are_refused_naming_both(tmp_path: Path,
                                                          run_coord: RunCoord) -> None:
    path = tmp_path / "twins.yaml"
    path.write_text(with_twin())
    result = run_coord("inventory", "check", str(path))
    assert result.status == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"{path}:11: hosts[2].address: host 'client2' has the same address as 'client1' "
        "(198.18.0.11): they are one machine; set shares_machine: true on each if that is meant "
        "(the results are then marked)",
    ]


def test_ipv6_spellings_of_one_address_are_one_machine() -> None:
    text = with_twin("0:0::1").replace("198.18.0.11", "::1")
    with pytest.raises(InventoryError, match=r"host 'client2' has the same address as 'client1'"):
        parse_inventory(text, "v6.yaml")


def test_the_flag_on_one_host_only_is_not_enough() -> None:
    with pytest.raises(InventoryError, match="set shares_machine: true on each"):
        parse_inventory(with_twin(extra="    shares_machine: true\n"), "half.yaml")


def test_the_flag_on_each_host_allows_it_and_marks_the_run() -> None:
    flag = "    shares_machine: true\n"
    loaded = parse_inventory(with_twin(extra=flag, first_extra=flag), "both.yaml")
    assert "hosts-share-a-machine" in run_marks(loaded.inventory)
    assert "hosts-share-a-machine" in MARKS


def test_separate_machines_carry_no_mark() -> None:
    loaded = parse_inventory(with_twin("198.18.0.12"), "apart.yaml")
    assert "hosts-share-a-machine" not in run_marks(loaded.inventory)
