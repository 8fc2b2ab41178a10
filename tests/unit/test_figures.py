"""One model per figure (issue 8): the figures are declared once, computed and stored as the
same records; the docs of inventory and results come from one renderer; the modules of the
statistics and the results stay small."""

from __future__ import annotations

import ast
import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from coordinator.core import model_docs
from coordinator.core.figures import (
    LATENCY_FIGURES,
    PERCENTILES,
    Latency,
    LatencyFields,
    LatencySummary,
    percentile_level,
)
from coordinator.inventory import docs as inventory_docs
from coordinator.inventory.schema import Host
from coordinator.results import AgentRepetition, CommandRecord, Repetition, load_results
from coordinator.results import docs as results_docs
from coordinator.run.view import summary_table
from tests.unit.test_results import FIXTURE, FIXTURE_V2, finished_document
from tests.unit.test_stats import histogram_of

ROOT = Path(__file__).resolve().parents[2]
SMALL_MODULES = ("coordinator/core", "coordinator/results")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
LONG_FUNCTIONS_KEPT = {"coordinator/core/reports.py:parse_agent_report"}
"""Moved unchanged: the decoding of load reports is being rewritten with the report schema."""


def test_the_latency_figures_are_the_fields_of_one_declaration() -> None:
    assert tuple(LatencyFields.model_fields) == LATENCY_FIGURES
    assert tuple(Latency.model_fields) == LATENCY_FIGURES
    assert tuple(LatencySummary.model_fields) == LATENCY_FIGURES
    assert dict(PERCENTILES) == {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0,
                                 "p999": 99.9}
    assert (*PERCENTILES, "max", "mean") == LATENCY_FIGURES
    for record in (Repetition, AgentRepetition, CommandRecord):
        assert record.model_fields["latency_usec"].annotation is Latency


def test_a_percentile_level_is_read_from_its_name() -> None:
    assert [percentile_level(name) for name in ("p50", "p90", "p999", "p9999")] == [
        50.0, 90.0, 99.9, 99.99
    ]


@given(st.lists(st.integers(1, 10_000_000), min_size=1, max_size=200))
@settings(max_examples=40)
def test_latency_of_a_histogram_reads_each_percentile_as_hdrhistogram_java_does(
    values: list[int],
) -> None:
    # The value of rank ceil(p/100 * n) among the sorted values, at the top of its bucket
    # (tests/unit/test_reference_percentiles.py compares with Java itself).
    histogram = histogram_of(values)
    latency = Latency.of(histogram)
    ranked = sorted(values)
    for name, level in PERCENTILES.items():
        rank = max(1, math.ceil(Fraction(repr(level)) * len(values) / 100))
        top = histogram.get_highest_equivalent_value(ranked[rank - 1])
        assert getattr(latency, name) == top, name
    assert latency.max == histogram.get_max_value()


def test_every_latency_figure_reaches_the_summary_table_and_the_docs() -> None:
    console = Console(width=200, record=True)
    console.print(summary_table(finished_document(2)))
    shown = console.export_text()
    reference = results_docs.render_reference()
    for name in LATENCY_FIGURES:
        assert f"{name} (ms)" in shown, name
        assert f"| `{name}` |" in reference, name


def test_the_summary_names_its_last_line_the_runs_marks_not_the_repetitions() -> None:
    """The repetitions' verdicts are listed above it: a bare "marks: none" under them read as
    if nothing had been flagged."""
    flagged = finished_document(2)
    for document, expected in ((flagged, "run marks: fewer-than-3-repetitions"),
                               (flagged.model_copy(update={"marks": []}), "run marks: none")):
        console = Console(width=200, record=True)
        console.print(summary_table(document))
        assert console.export_text().rstrip().splitlines()[-1] == expected


def test_inventory_and_results_docs_come_from_one_renderer() -> None:
    assert model_docs.table(Host, inventory_docs.COLUMNS) in inventory_docs.render_reference()
    assert model_docs.table(Latency, results_docs.COLUMNS) in results_docs.render_reference()


def _key_shape(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON value, lists as ``[]``; maps keyed by data left out."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if prefix.endswith(("errors", "commands", "inventory", "source_addresses")):
                continue
            path = f"{prefix}.{key}" if prefix else key
            found |= {path} | _key_shape(item, path)
    elif isinstance(value, list):
        for item in value:
            found |= _key_shape(item, f"{prefix}[]")
    return found


#: The open loop's optional figures (null in a closed loop).
OPEN_LOOP_KEYS = {
    "repetitions[].agents[].sent_per_sec", "repetitions[].agents[].behind_schedule",
    *(f"repetitions[].agents[].intervals[].{key}"
      for key in ("sent", "late", "lateness_max_usec", "not_sent", "behind_schedule",
                  "late_waiting", "not_sent_waiting", "loop_behind")),
}


def test_results_json_keeps_the_v2_shape() -> None:
    document = finished_document(3)
    metrics = load_results(FIXTURE_V2).repetitions[0].metrics
    document = document.model_copy(update={
        "repetitions": [r.with_metrics(metrics) for r in document.repetitions]})
    written = json.loads(document.finish("complete").model_dump_json())
    fixture = json.loads(FIXTURE_V2.read_text())
    # target and the stall series came later (optional); every other key is the fixture's,
    # and all of them.
    later = {"target", "repetitions[].agents[].gap_usec",
             "repetitions[].agents[].window_seconds",
             "repetitions[].start_skew_uncertainty_usec", "repetitions[].first_request_spread_usec",
             *(f"repetitions[].agents[].intervals[].{key}"
               for key in ("p999_usec", "max_usec", "gap_usec"))}
    later |= OPEN_LOOP_KEYS  # the open loop's figures came later too (optional)
    later.add("repetitions[].agents[].intervals[].redirects")  # a cluster's, later (optional)
    later |= {f"repetitions[].metrics[].intervals[].{kind}[].{key}"  # (optional)
              for kind in ("load_processes", "server_processes")
              for key in ("busy_poll_percent", "ports", "busy_threads")}
    assert _key_shape(written) - later == _key_shape(fixture)


def test_results_json_is_the_v1_shape_plus_metrics() -> None:
    written = json.loads(finished_document(3).finish("complete").model_dump_json())
    fixture = json.loads(FIXTURE.read_text())
    # target, the metrics and the start skew's uncertainty and first-request spread came later
    # (optional in v1); every other key is the fixture's, and all of them.
    later = {"target", "repetitions[].metrics", "repetitions[].start_skew_uncertainty_usec",
             "repetitions[].first_request_spread_usec", "repetitions[].agents[].gap_usec",
             "repetitions[].agents[].window_seconds",
             *(f"repetitions[].agents[].intervals[].{key}"
               for key in ("p999_usec", "max_usec", "gap_usec"))}
    later |= OPEN_LOOP_KEYS  # the open loop's figures came later too (optional)
    later.add("repetitions[].agents[].intervals[].redirects")  # a cluster's, later (optional)
    later |= {f"repetitions[].metrics[].intervals[].{kind}[].{key}"  # (optional)
              for kind in ("load_processes", "server_processes")
              for key in ("busy_poll_percent", "ports", "busy_threads")}
    assert _key_shape(written) - later == _key_shape(fixture)


def _oversized(relative: str) -> list[str]:
    path = ROOT / relative
    text = path.read_text()
    problems = []
    if len(text.splitlines()) > MAX_MODULE_LINES:
        problems.append(f"{relative}: {len(text.splitlines())} lines")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            name = f"{relative}:{node.name}"
            if length > MAX_FUNCTION_LINES and name not in LONG_FUNCTIONS_KEPT:
                problems.append(f"{name}: {length} lines")
    return problems


def test_statistics_and_results_modules_stay_small() -> None:
    modules = sorted(
        str(path.relative_to(ROOT))
        for folder in SMALL_MODULES
        for path in (ROOT / folder).glob("*.py")
    )
    assert "coordinator/core/stats.py" in modules
    assert [problem for module in modules for problem in _oversized(module)] == []
