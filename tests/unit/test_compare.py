"""`coord compare`: the pure comparison on hand-built documents (a real run's document with
its repetitions' figures replaced), and the command's output and exit statuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.report.compare import beyond_noise, compare, differences
from coordinator.results import ResultsDocument, load_results
from tests.conftest import RunCoord

FIXTURE = Path(__file__).parents[1] / "fixtures" / "results-v1.json"


def run_with(throughputs: list[float], p99s: list[int]) -> ResultsDocument:
    """The fixture run with its repetitions' throughput and p99 replaced."""
    document = load_results(FIXTURE)
    template = document.repetitions[0]
    repetitions = [
        template.model_copy(update={
            "index": index, "ops_per_sec": ops,
            "latency_usec": template.latency_usec.model_copy(update={"p99": p99})})
        for index, (ops, p99) in enumerate(zip(throughputs, p99s, strict=True), start=1)]
    return document.model_copy(update={"repetitions": repetitions})


def test_a_change_inside_the_repetitions_spread_is_noise() -> None:
    a = run_with([100, 110, 120], [500, 600, 700])
    b = run_with([105, 112, 125], [520, 580, 690])
    comparison = compare(["a", "b"], [a, b])
    for figure in comparison.figures:
        assert not figure.runs[1].beyond_noise, figure.kind.name
    assert comparison.regressions(0.0) == []


def test_a_slower_run_beyond_the_spread_is_a_regression_named_by_figure() -> None:
    a = run_with([100, 110, 120], [500, 600, 700])
    slow = run_with([60, 65, 70], [900, 1000, 1100])
    comparison = compare(["a", "slow"], [a, slow])
    throughput = next(f for f in comparison.figures if f.kind.name == "throughput")
    p99 = next(f for f in comparison.figures if f.kind.name == "p99")
    assert throughput.runs[1].regression and p99.runs[1].regression
    assert throughput.runs[1].change == pytest.approx((65 - 110) / 110)
    assert p99.runs[1].change == pytest.approx(400 / 600)
    assert comparison.regressions(5.0) == ["throughput in slow: -40.9%", "p99 in slow: +66.7%"]
    assert comparison.regressions(50.0) == ["p99 in slow: +66.7%"]


def test_a_faster_run_beyond_the_spread_is_no_regression() -> None:
    a = run_with([100, 110, 120], [500, 600, 700])
    fast = run_with([200, 210, 220], [100, 120, 130])
    comparison = compare(["a", "fast"], [a, fast])
    assert all(f.runs[1].beyond_noise for f in comparison.figures
               if f.kind.name in ("throughput", "p99"))
    assert comparison.regressions(0.0) == []


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=6),
       st.lists(st.floats(0, 1e6), min_size=1, max_size=6))
def test_beyond_noise_is_symmetric_and_never_for_overlapping_ranges(
        a: list[float], b: list[float]) -> None:
    assert beyond_noise(a, b) == beyond_noise(b, a)
    if min(a) <= max(b) and min(b) <= max(a):
        assert not beyond_noise(a, b)


def test_set_up_differences_are_listed_with_each_runs_value() -> None:
    a = load_results(FIXTURE)
    inventory = json.loads(json.dumps(a.inventory))
    inventory["benchmark"]["builtin"]["connections"] = 99
    b = a.model_copy(update={"inventory": inventory, "coord_version": "9.9.9",
                             "platform": {"kernel": "6.1"}})
    found = {d.what: d.values for d in differences([a, b])}
    assert found["inventory.benchmark.builtin.connections"] == [50, 99]
    assert found["coord_version"] == [a.coord_version, "9.9.9"]
    assert found["platform.kernel"] == [None, "6.1"]
    assert differences([a, a]) == []


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    a, slow = tmp_path / "a", tmp_path / "slow"
    a.mkdir()
    slow.mkdir()
    shutil.copy(FIXTURE, a / "results.json")
    document = json.loads(FIXTURE.read_text())
    for repetition in document["repetitions"]:
        repetition["ops_per_sec"] /= 3
        repetition["latency_usec"]["p99"] *= 10
    (slow / "results.json").write_text(json.dumps(document))
    return a, slow


def test_coord_compare_exits_1_naming_the_regressed_figure_with_fail_on_regression(
        run_coord: RunCoord, two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, slow = two_runs
    result = run_coord("compare", str(a), str(slow), "--fail-on-regression", "5",
                       "--html", str(tmp_path / "compare.html"))
    assert result.status == 1
    assert "REGRESSION" in result.stdout
    assert f"regression beyond noise and above 5%: throughput in {slow}: -66.7%" in result.stderr
    assert f"p99 in {slow}" in result.stderr
    assert (tmp_path / "compare.html").stat().st_size > 0


def test_coord_compare_of_the_same_runs_exits_0(run_coord: RunCoord,
                                                two_runs: tuple[Path, Path]) -> None:
    a, _ = two_runs
    result = run_coord("compare", str(a), str(a), "--fail-on-regression", "5")
    assert result.status == 0, result.stderr
    assert "no difference" in result.stdout
    assert "REGRESSION" not in result.stdout


def test_coord_compare_of_a_non_results_directory_is_one_line_status_2(
        run_coord: RunCoord, two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_runs
    result = run_coord("compare", str(a), str(tmp_path))
    assert result.status == 2
    assert result.stderr.strip() == f"{tmp_path}: not a results directory (no results.json)"


def test_coord_compare_refuses_a_run_without_a_finished_repetition(
        run_coord: RunCoord, two_runs: tuple[Path, Path]) -> None:
    a, slow = two_runs
    document = json.loads((slow / "results.json").read_text())
    document.update(repetitions=[], summary=None, status="running", finished=None)
    (slow / "results.json").write_text(json.dumps(document))
    result = run_coord("compare", str(a), str(slow))
    assert result.status == 2
    assert result.stderr.strip() == f"{slow}: no finished repetition to compare"


def with_driver(document: ResultsDocument, driver: str) -> ResultsDocument:
    inventory = json.loads(json.dumps(document.inventory))
    inventory["benchmark"]["driver"] = driver
    return document.model_copy(update={"inventory": inventory})


def test_runs_of_different_drivers_are_said_so_before_the_figures() -> None:
    a = load_results(FIXTURE)
    comparison = compare(["a", "b", "c"], [a, with_driver(a, "redis-benchmark"),
                                           with_driver(a, "memtier")])
    assert comparison.drivers == ["builtin", "redis-benchmark", "memtier"]
    note = comparison.drivers_note() or ""
    assert "load drivers differ (a: builtin, b: redis-benchmark, c: memtier)" in note
    assert {d.what: d.values for d in comparison.differences}[
        "inventory.benchmark.driver"] == ["builtin", "redis-benchmark", "memtier"]
    assert compare(["a", "a"], [a, a]).drivers_note() is None


def test_coord_compare_of_different_drivers_names_them_and_refuses_to_gate(
        run_coord: RunCoord, two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, slow = two_runs
    document = json.loads((slow / "results.json").read_text())
    document["inventory"]["benchmark"]["driver"] = "memtier"
    (slow / "results.json").write_text(json.dumps(document))
    shown = run_coord("compare", str(a), str(slow), "--html", str(tmp_path / "c.html"))
    assert shown.status == 0, shown.stderr
    assert "load drivers differ" in " ".join(shown.stdout.split())
    assert "load drivers differ" in (tmp_path / "c.html").read_text()
    gated = run_coord("compare", str(a), str(slow), "--fail-on-regression", "5")
    assert gated.status == 2
    assert gated.stderr.strip() == ("--fail-on-regression: the runs' load drivers differ "
                                    "(builtin, memtier); gate on runs of one driver")
