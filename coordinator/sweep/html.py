"""The sweep report as one self-contained HTML file (``sweep.html`` in the sweep directory),
in the style of the run report and with plotly.js inlined the same way (works offline):
throughput and p99 per cell, the throughput-versus-latency curve of each inventory with its
knee, ops/s per price per hour and the cheapest inventory meeting the bound when the plan gives
prices. Flagged cells are marked and never ranked. Figures come from
:mod:`coordinator.sweep.analysis`."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from coordinator.report.html import page
from coordinator.results.io import atomic_write
from coordinator.sweep.analysis import InventorySummary, SweepSummary, summarise
from coordinator.sweep.index import CellRecord, SweepIndex
from coordinator.sweep.plots import (
    curves_figure,
    parameters_text,
    per_cell_figure,
    price_figure,
)

SWEEP_HTML = "sweep.html"


def _e(text: object) -> str:
    return html.escape(str(text))


def _ms(usec: float) -> str:
    return f"{usec / 1000:,.3f}"


def render_sweep_html(index: SweepIndex, p99_bound_s: float | None, invocation: str) -> str:
    """The sweep report page of ``index``, judged against ``p99_bound_s``."""
    summary = summarise(index, p99_bound_s)
    figures: list[tuple[str, dict[str, Any]]] = []

    def plot(figure: dict[str, Any]) -> str:
        name = f"figure-{len(figures)}"
        figures.append((name, figure))
        return f'<div class="plot" data-figure="{name}"></div>'

    done = sum(1 for cell in index.cells if cell.status == "complete")
    measured = any(cell.headline is not None for cell in index.cells)
    per_price = price_figure(summary)
    body = [
        f"<h1>sweep {_e(index.name)}</h1>",
        f"<p>plan {_e(index.plan)}, started {_e(index.created.isoformat())}; "
        f"{done} of {len(index.cells)} cell(s) complete; {_bound(summary)}</p>",
        "<h2>Conclusions</h2>", _conclusions(summary),
        "<h2>Per cell</h2>",
        plot(per_cell_figure(index, summary)) if measured
        else '<p class="missing">no cell measured anything yet</p>',
        _cells_table(index, summary),
        "<h2>Throughput against latency</h2>",
        plot(curves_figure(index, summary)) if measured else "",
        "<h2>Per inventory</h2>", _inventories_table(summary),
        "<h2>Per price</h2>",
        plot(per_price) if per_price is not None
        else '<p class="missing">no price per hour in the plan, or no clean cell</p>',
        f"<p>written by <code>{_e(invocation)}</code>; each cell's own report.html is in its "
        "directory</p>",
    ]
    return page(f"sweep {index.name}", body, figures)


def write_sweep_html(directory: Path, index: SweepIndex, p99_bound_s: float | None,
                     invocation: str) -> Path:
    """Write ``directory/sweep.html`` (atomically); its path."""
    path = directory / SWEEP_HTML
    atomic_write(path, render_sweep_html(index, p99_bound_s, invocation).encode("utf-8"))
    return path


def _bound(summary: SweepSummary) -> str:
    if summary.p99_bound_usec is None:
        return "no p99 bound in the plan (report.p99_bound)"
    return f"p99 bound {_ms(summary.p99_bound_usec)} ms"


def _point(cell: CellRecord | None) -> str:
    if cell is None or cell.headline is None:
        return "-"
    return (f"{parameters_text(cell)}: {cell.headline.ops_per_sec:,.0f} ops/s, p99 "
            f"{_ms(cell.headline.p99_usec)} ms")


def _conclusions(summary: SweepSummary) -> str:
    lines = []
    for s in summary.inventories:
        lines.append(f"<li><b>{_e(s.inventory)}</b>: knee {_e(_point(s.knee))}"
                     + (f"; flagged cells {s.flagged} of {s.cells} (not ranked)"
                        if s.flagged else "") + "</li>")
    if summary.p99_bound_usec is not None:
        if summary.cheapest is not None:
            lines.append(f'<li class="clear">cheapest inventory meeting the bound in a clean '
                         f"cell: <b>{_e(summary.cheapest.inventory)}</b> at "
                         f"{summary.cheapest.price_per_hour:g}/h "
                         f"({_e(_point(summary.cheapest.best_within_bound))})</li>")
        elif any(s.price_per_hour is not None for s in summary.inventories):
            lines.append('<li class="flagged">no priced inventory met the bound in a clean '
                         "cell</li>")
        best = summary.best_value
        if best is not None and best.ops_per_price is not None:
            lines.append(f"<li>most ops/s per price per hour within the bound: "
                         f"<b>{_e(best.inventory)}</b> ({best.ops_per_price:,.0f})</li>")
    return f"<ul>{''.join(lines)}</ul>" if lines else "<p>no cell yet</p>"


CELL_HEADERS = ("inventory", "parameters", "status", "ops/s", "p50 (ms)", "p99 (ms)",
                "p99.9 (ms)", "ops/s per price/h", "notes")


def _cells_table(index: SweepIndex, summary: SweepSummary) -> str:
    knees = {s.knee.key for s in summary.inventories if s.knee is not None}
    rows = []
    for cell in index.cells:
        headline = cell.headline
        notes = []
        if cell.key in knees:
            notes.append("★ knee")
        notes += [f'<span class="flagged">{_e(flag)}</span> (not ranked)' for flag in cell.flags]
        if cell.undecided:
            notes.append(f"undecided: {_e(', '.join(cell.undecided))}")
        if cell.ramp_stop:
            notes.append(f"ramp stop: {_e(cell.ramp_stop)}")
        if cell.status in ("failed", "skipped") and cell.reason:
            notes.append(_e(cell.reason))
        per_price = ("-" if headline is None or cell.price_per_hour is None or cell.flags
                     else f"{headline.ops_per_sec / cell.price_per_hour:,.0f}")
        figures = (["-"] * 4 if headline is None else
                   [f"{headline.ops_per_sec:,.0f}", _ms(headline.p50_usec),
                    _ms(headline.p99_usec), _ms(headline.p999_usec)])
        cells = [cell.inventory, parameters_text(cell), cell.status, *figures, per_price]
        css = ' class="flagged-row"' if cell.flags else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{_e(c)}</td>" for c in cells)
                    + f"<td>{'; '.join(notes)}</td></tr>")
    head = "".join(f"<th>{_e(h)}</th>" for h in CELL_HEADERS)
    return (f"<table><tr>{head}</tr>{''.join(rows)}</table>"
            "<p>figures: medians over each cell's repetitions. A flagged cell (client-bound, "
            "unstable, skewed start, errors, no common window) is shown, never ranked: no knee, "
            "no per-price figure.</p>")


def _inventories_table(summary: SweepSummary) -> str:
    head = "".join(f"<th>{h}</th>" for h in (
        "inventory", "labels", "price/h", "clean/cells", "knee", "best within bound",
        "ops/s per price/h", "sustainable rate"))
    rows = "".join(
        "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in _inventory_cells(s)) + "</tr>"
        for s in summary.inventories)
    return f"<table><tr>{head}</tr>{rows}</table>"


def _inventory_cells(s: InventorySummary) -> list[str]:
    sustainable = s.sustainable
    rate = ("-" if sustainable is None or sustainable.headline is None else
            f"{parameters_text(sustainable)} ({sustainable.headline.ops_per_sec:,.0f} ops/s)")
    return [s.inventory, ", ".join(f"{k}={v}" for k, v in s.labels.items()) or "-",
            f"{s.price_per_hour:g}" if s.price_per_hour is not None else "-",
            f"{s.clean}/{s.cells}", _point(s.knee), _point(s.best_within_bound),
            f"{s.ops_per_price:,.0f}" if s.ops_per_price is not None else "-", rate]
