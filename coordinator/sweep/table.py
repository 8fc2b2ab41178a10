"""What `coord sweep` shows: a line per cell as the sweep goes, the dry-run's cell list, and
the sweep report's tables. Nothing here computes a figure: the index and
:mod:`coordinator.sweep.analysis` do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from agent.messages import LoadProgress
from agent.metrics.model import MetricsInterval
from coordinator.core.baselines import BaselinePair
from coordinator.remote.fanout import NoProgress, ProgressView
from coordinator.results import Repetition
from coordinator.run.runner import RunView
from coordinator.sweep.analysis import InventorySummary, SweepSummary, summarise
from coordinator.sweep.estimate import FLEET_START_S, cell_seconds
from coordinator.sweep.index import CellRecord, SweepIndex
from coordinator.sweep.load import PlannedCell


def _ms(usec: float) -> str:
    return f"{usec / 1000:.3f}"


def _about(seconds: float) -> str:
    whole = max(1, round(seconds))
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


def _parameters(record: CellRecord) -> str:
    return ", ".join(f"{path.rsplit('.', 1)[-1]}={value}"
                     for path, value in record.parameters.items()) or "-"


class QuietRunView:
    """A cell's run shown as one line per repetition (the sweep's lines stay readable)."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def deploying(self) -> ProgressView:
        return NoProgress()

    def repetition(self, index: int, total: int) -> None:
        """Nothing: the repetition's line comes when it is done."""

    def progress(self, elapsed_s: float, total_s: float, clients: dict[str, LoadProgress],
                 hosts: Mapping[str, MetricsInterval]) -> None:
        """Nothing: a sweep shows cells, not intervals."""

    def repetition_done(self, repetition: Repetition) -> None:
        marks = f" [{', '.join(repetition.marks)}]" if repetition.marks else ""
        self._console.print(f"    repetition {repetition.index}: "
                            f"{repetition.ops_per_sec:,.0f} ops/s, p99 "
                            f"{_ms(repetition.latency_usec.p99)} ms{marks}")

    def baseline_pair(self, when: str, pair: BaselinePair) -> None:
        """Nothing: the cell's results.json holds the baselines."""


class SweepConsoleView:
    """One line per cell and fleet on ``console`` (stderr)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._run_view = QuietRunView(console)

    def fleet_starting(self, inventory: str) -> None:
        self._console.print(f"{inventory}: starting agents")

    def cell_started(self, done: int, total: int, record: CellRecord,
                     seconds_left: float) -> None:
        self._console.print(f"[{done}/{total}] {record.key}: running "
                            f"(about {_about(seconds_left)} left)")

    def cell_ended(self, done: int, total: int, record: CellRecord) -> None:
        figures = ""
        if record.headline is not None:
            figures = (f" {record.headline.ops_per_sec:,.0f} ops/s, p99 "
                       f"{_ms(record.headline.p99_usec)} ms")
        extra = f" [{', '.join(record.flags)}]" if record.flags else ""
        reason = f": {record.reason}" if record.status == "failed" and record.reason else ""
        self._console.print(f"[{done}/{total}] {record.key}: {record.status}{figures}{extra}"
                            f"{reason}", soft_wrap=True)

    def run_view(self) -> RunView:
        return self._run_view


def dry_run_table(cells: Sequence[PlannedCell], index: SweepIndex) -> RenderableType:
    """``--dry-run``: every cell, whether it would run, and the estimated duration."""
    table = Table(title="sweep cells")
    for column in ("cell", "inventory", "parameters", "state", "estimate"):
        table.add_column(column)
    total = 0.0
    inventories: set[str] = set()
    for planned in cells:
        record = index.cell(planned.cell.key)
        state = record.status if record is not None else "pending"
        runs = state != "complete"
        seconds = cell_seconds(planned.loaded.inventory)
        if runs:
            total += seconds
            inventories.add(planned.cell.inventory.name)
        table.add_row(planned.cell.key, planned.cell.inventory.name,
                      ", ".join(f"{p}={v}" for p, v in planned.cell.parameters.items()) or "-",
                      "complete: not run again" if not runs else state,
                      _about(seconds) if runs else "-")
    total += FLEET_START_S * len(inventories)
    to_run = sum(1 for planned in cells
                 if (r := index.cell(planned.cell.key)) is None or r.status != "complete")
    return Group(table, Text(f"{to_run} of {len(cells)} cell(s) to run, about "
                             f"{_about(total)} (agents started once per inventory: "
                             f"{len(inventories)})"))


def report(index: SweepIndex, p99_bound_s: float | None) -> RenderableType:
    """The sweep report: every cell, then every inventory's knee, best cell within the bound
    and per-price figures, then the cheapest inventory meeting the bound."""
    summary = summarise(index, p99_bound_s)
    return Group(_cells_table(index, summary), _inventories_table(summary),
                 *_conclusions(summary))


def _cells_table(index: SweepIndex, summary: SweepSummary) -> Table:
    knees = {s.knee.key for s in summary.inventories if s.knee is not None}
    table = Table(title=f"sweep {index.name}: cells (per inventory by throughput; "
                  "◆ the knee: highest ops/s ÷ p99)")
    for column in ("inventory", "parameters", "status", "ops/s", "p50 ms", "p99 ms",
                   "ops/s per price/h", "notes"):
        table.add_column(column, justify="right" if column.endswith(("s", "ms", "/h")) and
                         column not in ("parameters", "status", "notes") else "left")
    by_inventory: dict[str, list[CellRecord]] = {}
    for cell in index.cells:
        by_inventory.setdefault(cell.inventory, []).append(cell)
    for cells in by_inventory.values():
        for cell in sorted(cells, key=lambda c: c.headline.ops_per_sec if c.headline else -1):
            headline = cell.headline
            notes = []
            if cell.key in knees:
                notes.append("◆ knee")
            notes += [f"[red]{flag}[/red] (not ranked)" for flag in cell.flags]
            if cell.undecided:
                notes.append(f"undecided: {', '.join(cell.undecided)}")
            if cell.ramp_stop:
                notes.append(f"ramp stop: {cell.ramp_stop}")
            if cell.status in ("failed", "skipped") and cell.reason:
                notes.append(cell.reason)
            per_price = ("-" if headline is None or cell.price_per_hour is None
                         else f"{headline.ops_per_sec / cell.price_per_hour:,.0f}")
            table.add_row(cell.inventory, _parameters(cell), cell.status,
                          f"{headline.ops_per_sec:,.0f}" if headline else "-",
                          _ms(headline.p50_usec) if headline else "-",
                          _ms(headline.p99_usec) if headline else "-",
                          per_price, "; ".join(notes))
    return table


def _inventories_table(summary: SweepSummary) -> Table:
    bound = (f"p99 ≤ {_ms(summary.p99_bound_usec)} ms" if summary.p99_bound_usec is not None
             else "no p99 bound in the plan (report.p99_bound)")
    table = Table(title=f"per inventory ({bound})")
    for column in ("inventory", "labels", "price/h", "clean/cells", "knee", "best within bound",
                   "ops/s per price/h", "sustainable rate"):
        table.add_column(column)
    for s in summary.inventories:
        table.add_row(s.inventory, ", ".join(f"{k}={v}" for k, v in s.labels.items()) or "-",
                      f"{s.price_per_hour:g}" if s.price_per_hour is not None else "-",
                      f"{s.clean}/{s.cells}", _point(s.knee), _point(s.best_within_bound),
                      f"{s.ops_per_price:,.0f}" if s.ops_per_price is not None else "-",
                      _rate(s))
    return table


def _point(cell: CellRecord | None) -> str:
    if cell is None or cell.headline is None:
        return "-"
    return (f"{_parameters(cell)}: {cell.headline.ops_per_sec:,.0f} ops/s, p99 "
            f"{_ms(cell.headline.p99_usec)} ms")


def _rate(summary: InventorySummary) -> str:
    cell = summary.sustainable
    if cell is None or cell.headline is None:
        return "-"
    return f"{_parameters(cell)} ({cell.headline.ops_per_sec:,.0f} ops/s)"


def _conclusions(summary: SweepSummary) -> list[Text]:
    lines: list[Text] = []
    if summary.p99_bound_usec is None:
        return lines
    bound = f"p99 ≤ {_ms(summary.p99_bound_usec)} ms"
    if summary.cheapest is not None:
        lines.append(Text(f"cheapest inventory meeting {bound} in a clean cell: "
                          f"{summary.cheapest.inventory} at {summary.cheapest.price_per_hour:g}"
                          f"/h ({_point(summary.cheapest.best_within_bound)})"))
    elif any(s.price_per_hour is not None for s in summary.inventories):
        lines.append(Text(f"no priced inventory met {bound} in a clean cell"))
    if summary.best_value is not None and summary.best_value.ops_per_price is not None:
        lines.append(Text(f"most ops/s per price per hour within the bound: "
                          f"{summary.best_value.inventory} "
                          f"({summary.best_value.ops_per_price:,.0f})"))
    return lines
