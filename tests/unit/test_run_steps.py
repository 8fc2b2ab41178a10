"""The run's step list and the marks registry: one declaration each, used by the run, the
check and the docs. Pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.core import marks
from coordinator.inventory.loader import load_inventory
from coordinator.inventory.summary import run_plan
from coordinator.results import MARKS
from coordinator.results.docs import render_reference
from coordinator.run import runner
from coordinator.run.steps import REPETITION_STEPS, STEPS, step_names

EXAMPLE = Path(__file__).parents[2] / "inventory" / "two-clients.yaml"


def test_the_check_announces_exactly_the_steps_of_the_run_baselines_included() -> None:
    inventory = load_inventory(EXAMPLE).inventory
    assert inventory.baseline.enabled
    lines = run_plan(inventory)
    assert [line for line in lines if "netperf TCP_RR" in line] == [
        "5. baseline before: netperf TCP_RR before the first repetition, every client to every "
        "server host, 3 x 10s per pair, netserver on port 12865 started and stopped by coord",
        "13. baseline after: netperf TCP_RR after the last repetition, every client to every "
        "server host, 3 x 10s per pair, netserver on port 12865 started and stopped by coord"]
    announced = [line.split(". ", 1)[1].split(":", 1)[0] for line in lines[1:]]
    assert announced == step_names()


def test_every_repetition_step_has_an_action_and_no_action_is_unannounced() -> None:
    assert list(runner.REPETITION_STEP_ACTIONS) == [step.name for step in REPETITION_STEPS]
    assert step_names("repetition") == [step.name for step in REPETITION_STEPS]
    assert len({step.name for step in STEPS}) == len(STEPS)


def test_the_marks_registry_is_what_the_results_and_the_docs_use() -> None:
    assert set(MARKS) == set(marks.MARKS)
    reference = render_reference()
    for kind in marks.REGISTRY:
        assert f"| `{kind.name}` | {kind.scope} | {kind.severity} | {kind.meaning} |" in reference
    docs = (Path(__file__).parents[2] / "docs" / "results.md").read_text()
    assert marks.marks_table() in docs


def test_the_run_sets_only_registered_marks() -> None:
    shared = load_inventory(EXAMPLE, ["hosts[0].roles=[server, client]",
                                      "benchmark.repetitions=2"]).inventory
    assert set(runner.run_marks(shared)) <= set(marks.MARKS)
    assert all(marks.MARKS[name].scope == "run" for name in runner.run_marks(shared))


def test_progress_is_polled_at_its_period_and_once_just_after_the_planned_end() -> None:
    period, delay = runner.PROGRESS_PERIOD_S, runner.END_POLL_DELAY_S
    assert runner.next_poll_in(100.0, 110.0) == period
    assert runner.next_poll_in(109.8, 110.0) == pytest.approx(0.2 + delay)
    assert runner.next_poll_in(110.0, 110.0) == period
    assert runner.next_poll_in(125.0, 110.0) == period
