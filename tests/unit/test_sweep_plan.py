"""Sweep plans: checked whole before any host is touched, one located line per problem, and
expanded into cells deterministically."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.core.errors import InventoryError
from coordinator.sweep.load import load_sweep
from coordinator.sweep.plan import SweepPlan, expand

EXAMPLE = Path(__file__).parents[2] / "inventory" / "two-clients.yaml"
HEAD = f"""\
version: 1
name: s1
inventories:
  - name: small
    file: {EXAMPLE}
    labels: {{instance_type: m5.large}}
    price_per_hour: 0.1
  - name: large
    file: {EXAMPLE}
"""


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(HEAD + body)
    return path


def problems(tmp_path: Path, body: str) -> list[str]:
    path = write(tmp_path, body)
    with pytest.raises(InventoryError) as raised:
        load_sweep(path)
    lines = raised.value.lines()
    assert all("\n" not in line for line in lines)
    return [line.replace(str(path), "plan.yaml") for line in lines]


def test_a_matrix_expands_to_every_combination_per_inventory(tmp_path: Path) -> None:
    loaded = load_sweep(write(tmp_path, """\
set: {benchmark.repetitions: 1, baseline.enabled: false, benchmark.duration: 2s}
matrix:
  benchmark.builtin.connections: [10, 50]
  benchmark.builtin.pipeline: [1, 16]
"""))
    assert [planned.cell.key for planned in loaded.cells] == [
        f"{inventory}/connections={c}_pipeline={p}"
        for inventory in ("small", "large") for c in (10, 50) for p in (1, 16)]
    last = loaded.cells[-1].loaded.inventory
    assert (last.benchmark.builtin.connections, last.benchmark.builtin.pipeline) == (50, 16)
    assert (last.benchmark.repetitions, last.benchmark.duration) == (1, 2.0)
    assert last.baseline.enabled is False


def test_an_unknown_path_is_one_line_at_its_plan_line(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
matrix:
  benchmark.builtin.connectionz: [10, 50]
""") == ["plan.yaml:11: benchmark.builtin.connectionz: unknown key 'connectionz' "
         "(did you mean 'connections'?)"]


def test_a_value_of_the_wrong_type_names_its_line(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
set:
  benchmark.duration: 2s
matrix:
  benchmark.builtin.connections: [10, many]
  benchmark.builtin.pipeline: [1, 0]
""") == ["plan.yaml:13: benchmark.builtin.connections: must be an integer, got 'many'",
         "plan.yaml:14: benchmark.builtin.pipeline: must be >= 1, got 0"]


def test_an_empty_matrix_or_axis_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, "matrix: {}\n") == [
        "plan.yaml:10: matrix: must have at least 1 item(s), got a mapping"]
    assert problems(tmp_path, "matrix:\n  benchmark.builtin.pipeline: []\n") == [
        "plan.yaml:11: matrix.benchmark.builtin.pipeline: must have at least 1 item(s), "
        "got a list"]


def test_plan_keys_and_kinds_are_checked(tmp_path: Path) -> None:
    assert problems(tmp_path, "matrx: {benchmark.builtin.pipeline: [1]}\n") == [
        "plan.yaml:10: matrx: unknown key 'matrx' (did you mean 'matrix'?)"]
    assert problems(tmp_path, "report: {}\n") == [
        "plan.yaml:1: needs exactly one of matrix, cells or ramp, got a mapping"]
    both = problems(tmp_path, "cells: [{benchmark.builtin.pipeline: 1}]\n"
                              "matrix: {benchmark.builtin.pipeline: [1]}\n")
    assert both == ["plan.yaml:1: needs exactly one of matrix, cells or ramp (matrix and cells "
                    "given), got a mapping"]


def test_fleet_fields_and_malformed_paths_cannot_vary(tmp_path: Path) -> None:
    lines = problems(tmp_path, "cells:\n  - hosts[0].port: 2222\n    bench mark: 1\n")
    assert lines[0].startswith("plan.yaml:11: cells[0].hosts[0].port: hosts[0].port: cannot "
                               "vary within a sweep")
    assert lines[1].startswith("plan.yaml:12: cells[0].bench mark: not a field path")


def test_a_ramp_lists_its_rates_and_checks_its_bounds(tmp_path: Path) -> None:
    loaded = load_sweep(write(tmp_path, """\
ramp: {start: 1000, step: 500, max: 2000, p99_bound: 2ms}
"""))
    rates = [planned.cell.parameters["benchmark.builtin.rate"] for planned in loaded.cells]
    assert rates == [1000, 1500, 2000] * 2
    assert loaded.plan.ramp is not None and loaded.plan.ramp.p99_bound == 0.002
    assert problems(tmp_path, "ramp: {start: 10, step: 1, max: 50, p99_bound: 2}\n") == [
        "plan.yaml:10: ramp.p99_bound: must be a duration with a unit, like 2s, got 2"]
    assert problems(tmp_path, "ramp: {start: 10, step: 1, max: 5, p99_bound: 2ms}\n") == [
        "plan.yaml:10: ramp: max (5) is below start (10), got a mapping"]


def test_a_ramps_slo_is_the_reports_bound_unless_the_report_names_one() -> None:
    base = {"name": "s", "inventories": [{"name": "a", "file": "x"}]}
    ramp = {"start": 10.0, "step": 1.0, "max": 20.0, "p99_bound": 0.002}
    assert SweepPlan.model_validate({**base, "ramp": ramp}).report_bound() == 0.002
    assert SweepPlan.model_validate(
        {**base, "ramp": ramp, "report": {"p99_bound": 0.005}}).report_bound() == 0.005
    matrix = {"benchmark.builtin.pipeline": [1]}
    assert SweepPlan.model_validate({**base, "matrix": matrix}).report_bound() is None


def test_a_missing_inventory_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("name: s\ninventories: [{name: a, file: nope.yaml}]\n"
                    "matrix: {benchmark.builtin.pipeline: [1]}\n")
    with pytest.raises(InventoryError) as raised:
        load_sweep(path)
    assert raised.value.lines() == [f"{tmp_path / 'nope.yaml'}: no such file"]


axis = st.lists(st.integers(1, 1000), min_size=1, max_size=4, unique=True)


@given(st.dictionaries(st.sampled_from(["benchmark.builtin.connections",
                                        "benchmark.builtin.pipeline",
                                        "benchmark.builtin.value_size"]), axis, min_size=1),
       st.integers(1, 3))
def test_cells_are_the_product_with_distinct_directories(matrix: dict[str, list[int]],
                                                         inventories: int) -> None:
    plan = SweepPlan.model_validate({
        "name": "s", "matrix": matrix,
        "inventories": [{"name": f"i{n}", "file": "x.yaml"} for n in range(inventories)]})
    cells = expand(plan)
    expected = inventories
    for values in matrix.values():
        expected *= len(values)
    assert len(cells) == expected
    assert len({cell.key for cell in cells}) == expected
    assert all(re.fullmatch(r"[A-Za-z0-9=._-]+", cell.slug) for cell in cells)


def test_the_example_plan_is_valid() -> None:
    loaded = load_sweep(EXAMPLE.parent / "sweep" / "plan.yaml")
    assert len(loaded.cells) == 12
    assert {planned.cell.inventory.name for planned in loaded.cells} == {"c6i-2xlarge",
                                                                         "m7i-2xlarge"}
