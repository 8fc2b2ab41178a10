"""The sweep's pure parts: the index's round trip and resume, the ramp's stop, the report's
knee, per-price figures and the cheapest inventory, flagged cells never ranked."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from coordinator.results import ResultsDocument
from coordinator.sweep.analysis import knee, summarise
from coordinator.sweep.html import render_sweep_html
from coordinator.sweep.index import CellRecord, Headline, SweepIndex, from_results, planned_index
from coordinator.sweep.plan import InventoryEntry, Ramp, SweepPlan, expand
from coordinator.sweep.plots import curves_figure, price_figure
from coordinator.sweep.ramp import ramp_stop
from coordinator.sweep.store import write_index
from coordinator.sweep.table import report
from tests.conftest import RunCoord

NOW = datetime(2026, 11, 29, tzinfo=timezone.utc)
V2_RESULTS = Path(__file__).parents[1] / "fixtures" / "results-v2.json"


def cell(inventory: str, connections: int, ops: float, p99: float, *, price: float | None,
         flags: tuple[str, ...] = (), status: str = "complete") -> CellRecord:
    return CellRecord.model_validate({
        "key": f"{inventory}/connections={connections}", "inventory": inventory, "labels": {},
        "price_per_hour": price, "parameters": {"benchmark.builtin.connections": connections},
        "status": status, "flags": list(flags),
        "headline": Headline(repetitions=3, ops_per_sec=ops, p50_usec=p99 / 4, p99_usec=p99,
                             p999_usec=p99 * 2, error_rate=0.0)})


def index_of(*cells: CellRecord) -> SweepIndex:
    return SweepIndex(schema_version=1, name="s", plan="p.yaml", created=NOW,
                      cells=list(cells))


def test_the_index_round_trips_through_json() -> None:
    index = index_of(cell("a", 10, 1000.0, 500.0, price=0.1, flags=("client-bound",)))
    assert SweepIndex.model_validate_json(index.model_dump_json()) == index


def test_a_resumed_index_keeps_known_cells_and_adds_new_ones() -> None:
    plan = SweepPlan.model_validate({"name": "s", "inventories": [{"name": "a", "file": "x"}],
                                     "matrix": {"benchmark.builtin.connections": [10, 50]}})
    done = cell("a", 10, 1000.0, 500.0, price=None)
    index = planned_index("s", "p", expand(plan), NOW, index_of(done))
    assert [c.status for c in index.cells] == ["complete", "pending"]
    assert index.cells[0] == done


def test_the_knee_is_the_clean_cell_of_highest_power_and_flagged_cells_are_not_ranked() -> None:
    cells = [cell("a", 10, 1000.0, 100.0, price=1.0),    # power 10
             cell("a", 50, 4000.0, 200.0, price=1.0),    # power 20: the knee
             cell("a", 100, 5000.0, 1000.0, price=1.0),  # power 5: past the knee
             cell("a", 200, 9000.0, 150.0, price=1.0, flags=("client-bound",))]  # not ranked
    chosen = knee(cells)
    assert chosen is not None and chosen.key == "a/connections=50"


def test_cheapest_inventory_meeting_the_bound_and_ops_per_price() -> None:
    index = index_of(
        cell("big", 10, 9000.0, 300.0, price=1.0),
        cell("small", 10, 3000.0, 400.0, price=0.25),
        cell("small", 50, 5000.0, 2000.0, price=0.25),   # over the bound
        cell("tiny", 10, 8000.0, 100.0, price=0.1, flags=("unstable",)),  # not clean
    )
    summary = summarise(index, p99_bound_s=0.001)
    assert summary.cheapest is not None and summary.cheapest.inventory == "small"
    by_name = {s.inventory: s for s in summary.inventories}
    assert by_name["small"].best_within_bound is not None
    assert by_name["small"].best_within_bound.key == "small/connections=10"
    assert by_name["small"].ops_per_price == 12000.0
    assert by_name["tiny"].best_within_bound is None and by_name["tiny"].flagged == 1
    assert summary.best_value is not None and summary.best_value.inventory == "small"
    console = Console(width=250, record=True)
    console.print(report(index, 0.001))
    text = console.export_text()
    assert ("cheapest inventory meeting p99 ≤ 1.000 ms in a clean cell: small at 0.25/h "
            "(connections=10: 3,000 ops/s, p99 0.400 ms)") in text
    assert "unstable (not ranked)" in text


@given(st.lists(st.tuples(st.floats(1, 1e6), st.floats(1, 1e6), st.booleans()), min_size=1,
                max_size=12))
def test_no_flagged_cell_is_ever_the_knee_or_best(points: list[tuple[float, float, bool]]
                                                  ) -> None:
    cells = [cell("a", n + 1, ops, p99, price=0.5, flags=("client-bound",) if bad else ())
             for n, (ops, p99, bad) in enumerate(points)]
    summary = summarise(index_of(*cells), p99_bound_s=1.0)
    (only,) = summary.inventories
    for chosen in (only.knee, only.best_within_bound):
        assert chosen is None or not chosen.flags
    assert (only.knee is None) == all(bad for _, _, bad in points)


def test_a_ramp_stops_over_the_bound_or_behind_the_rate() -> None:
    ramp = Ramp.model_validate({"start": 1000.0, "step": 1000.0, "max": 5000.0,
                                "p99_bound": 0.002})
    assert ramp.rates() == [1000.0, 2000.0, 3000.0, 4000.0, 5000.0]

    def at(rate: float, ops: float, p99: float) -> CellRecord:
        return cell("a", 1, ops, p99, price=None).model_copy(
            update={"parameters": {"benchmark.builtin.rate": rate}})

    assert ramp_stop(ramp, at(1000.0, 1990.0, 1500.0), clients=2) is None
    over = ramp_stop(ramp, at(2000.0, 4000.0, 2500.0), clients=2)
    assert over is not None and "over the 2000 µs bound" in over.reason
    behind = ramp_stop(ramp, at(2000.0, 3000.0, 1000.0), clients=2)
    assert behind is not None and "behind the 4000/s asked" in behind.reason
    failed = at(2000.0, 4000.0, 100.0).model_copy(update={"status": "failed"})
    assert ramp_stop(ramp, failed, clients=2) is not None


def test_a_ramp_stops_where_the_open_loop_fell_behind_its_schedule() -> None:
    """The clients could not send at the rate asked (the open loop's behind_schedule): the
    replies may still be within 5 % of it and p99 within the bound, but the rate is not
    sustained, and a higher one will not be."""
    ramp = Ramp.model_validate({"start": 1000.0, "step": 1000.0, "max": 5000.0,
                                "p99_bound": 0.002})
    base = cell("a", 1, 1990.0, 1500.0, price=None)
    assert base.headline is not None

    def at(behind: bool | None, sent: float | None) -> CellRecord:
        headline = base.headline.model_copy(  # type: ignore[union-attr]
            update={"behind_schedule": behind, "sent_per_sec": sent})
        return base.model_copy(update={"parameters": {"benchmark.builtin.rate": 1000.0},
                                       "headline": headline})

    assert ramp_stop(ramp, at(False, 2000.0), clients=2) is None
    assert ramp_stop(ramp, at(None, None), clients=2) is None  # an index older than the fields
    behind = ramp_stop(ramp, at(True, 1960.0), clients=2)
    assert behind is not None
    assert behind.reason == ("the clients fell behind their schedule at 1000/s per client "
                             "(requests sent late or not at all; 1960/s sent of the 2000/s "
                             "asked)")


def test_the_headline_keeps_the_open_loop_figures() -> None:
    """The achieved send rate (median over repetitions of the agents' sum) and whether any
    agent fell behind its schedule in any repetition; both null for a closed loop."""
    closed_loop = json.loads(V2_RESULTS.read_text())
    closed = from_results(cell("a", 1, 0.0, 0.0, price=None),
                          ResultsDocument.model_validate_json(json.dumps(closed_loop)))
    assert closed.headline is not None
    assert closed.headline.behind_schedule is None and closed.headline.sent_per_sec is None
    open_loop = copy.deepcopy(closed_loop)
    sends = [(900.0, 1000.0, False), (950.0, 1000.0, True), (800.0, 1000.0, False)]
    for repetition, (first, second, late) in zip(open_loop["repetitions"], sends, strict=True):
        for agent, sent in zip(repetition["agents"], (first, second), strict=True):
            agent.update(sent_per_sec=sent, behind_schedule=late and sent == second)
    record = from_results(cell("a", 1, 0.0, 0.0, price=None),
                          ResultsDocument.model_validate_json(json.dumps(open_loop)))
    assert record.headline is not None
    assert record.headline.sent_per_sec == 1900.0
    assert record.headline.behind_schedule is True
    for repetition in open_loop["repetitions"]:
        for agent in repetition["agents"]:
            agent["behind_schedule"] = False
    on_time = from_results(cell("a", 1, 0.0, 0.0, price=None),
                           ResultsDocument.model_validate_json(json.dumps(open_loop)))
    assert on_time.headline is not None and on_time.headline.behind_schedule is False


def test_the_sustainable_rate_is_below_the_stop() -> None:
    def step(n: int, stop: str | None = None) -> CellRecord:
        return cell("a", n, 1000.0 * n, 100.0, price=None).model_copy(update={
            "parameters": {"benchmark.builtin.rate": 500.0 * n}, "ramp_step": n,
            "ramp_stop": stop})

    skipped = step(3).model_copy(update={"status": "skipped", "headline": None})
    summary = summarise(index_of(step(0), step(1), step(2, "p99 over"), skipped), None)
    sustained = summary.inventories[0].sustainable
    assert sustained is not None and sustained.ramp_step == 1


def test_the_cell_that_stopped_a_ramp_is_never_the_knee_nor_the_best_within_bound() -> None:
    """It did not sustain its rate (behind schedule, or p99 over the SLO): ranking it would
    report a rate the ramp itself rejected, above the sustainable one."""
    def step(n: int, ops: float, p99: float, stop: str | None = None) -> CellRecord:
        return cell("a", n, ops, p99, price=1.0).model_copy(update={
            "parameters": {"benchmark.builtin.rate": 200.0 + 30000.0 * n}, "ramp_step": n,
            "ramp_stop": stop})

    summary = summarise(index_of(step(0, 200.0, 400.0),
                                 step(1, 30143.0, 41311.0, "the clients fell behind")), 0.05)
    (only,) = summary.inventories
    assert only.sustainable is not None and only.sustainable.ramp_step == 0
    assert only.knee is not None and only.knee.ramp_step == 0
    assert only.best_within_bound is not None and only.best_within_bound.ramp_step == 0
    assert only.clean == 2


def test_a_plan_with_prices_keeps_its_labels_in_every_cell() -> None:
    entry = InventoryEntry.model_validate({"name": "m5", "file": "m5.yaml",
                                           "labels": {"region": "eu-west-1"},
                                           "price_per_hour": 0.096})
    plan = SweepPlan.model_validate({"name": "s", "inventories": [entry.model_dump()],
                                     "cells": [{"benchmark.builtin.pipeline": 1}]})
    index = planned_index("s", "p", expand(plan), NOW)
    assert index.cells[0].labels == {"region": "eu-west-1"}
    assert index.cells[0].price_per_hour == 0.096


def two_inventories() -> SweepIndex:
    return index_of(
        cell("big", 10, 1000.0, 100.0, price=1.0),
        cell("big", 50, 4000.0, 200.0, price=1.0),       # the knee of big
        cell("big", 100, 9000.0, 150.0, price=1.0, flags=("client-bound",)),
        cell("small", 10, 3000.0, 400.0, price=0.25),    # the knee of small, the cheapest
        cell("small", 50, 5000.0, 2000.0, price=0.25))


def test_curves_join_clean_cells_only_and_mark_each_knee() -> None:
    index = two_inventories()
    figure = curves_figure(index, summarise(index, p99_bound_s=0.001))
    by_name = {trace["name"]: trace for trace in figure["data"]}
    assert by_name["big"]["x"] == [1000.0, 4000.0]
    assert by_name["big: flagged (not ranked)"]["x"] == [9000.0]
    assert (by_name["big: knee"]["x"], by_name["big: knee"]["y"]) == ([4000.0], [0.2])
    assert by_name["small: knee"]["x"] == [3000.0]
    assert figure["layout"]["shapes"][0]["y0"] == 1.0  # the 1 ms bound


def test_the_per_price_plot_needs_prices_and_outlines_the_cheapest() -> None:
    index = two_inventories()
    figure = price_figure(summarise(index, p99_bound_s=0.001))
    assert figure is not None
    bars = figure["data"][0]
    assert bars["x"] == ["big", "small"]
    assert "cheapest" in bars["text"][1] and "cheapest" not in bars["text"][0]
    unpriced = index_of(cell("a", 10, 1000.0, 100.0, price=None))
    assert price_figure(summarise(unpriced, p99_bound_s=0.001)) is None


def test_the_sweep_page_marks_flagged_cells_and_never_ranks_them() -> None:
    index = two_inventories()
    page = render_sweep_html(index, 0.001, "coord sweep --report")
    assert page.count('class="plot"') == 3
    flagged_row = next(row for row in page.split("<tr") if "client-bound" in row)
    assert "flagged-row" in flagged_row and "(not ranked)" in flagged_row
    assert "<td>-</td>" in flagged_row  # no ops/s per price for a flagged cell
    assert "★ knee" not in flagged_row
    assert "cheapest inventory meeting the bound in a clean cell: <b>small</b>" in page
    unpriced = index_of(cell("a", 10, 1000.0, 100.0, price=None))
    assert render_sweep_html(unpriced, None, "x").count('class="plot"') == 2


def test_coord_sweep_report_writes_sweep_html(run_coord: RunCoord, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    out.mkdir()
    write_index(out, two_inventories())
    plan = Path(__file__).parents[2] / "inventory" / "sweep" / "plan.yaml"
    result = run_coord("sweep", "--plan", str(plan), "--out", str(out), "--report")
    assert result.status == 0, result.stderr
    assert f"report: {out / 'sweep.html'}" in result.stdout
    assert (out / "sweep.html").read_text().count('class="plot"') == 3
