"""The sweep report's plots as plotly figure specifications (plain JSON data). Pure: no I/O.

Every figure comes from the index and :mod:`coordinator.sweep.analysis`; nothing is computed
here but where a point goes. Flagged cells are drawn apart (grey, crossed, "not ranked") and
never joined to an inventory's curve: a curve is the clean cells only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from coordinator.report.plots import COLORS, USEC_PER_MS
from coordinator.sweep.analysis import SweepSummary
from coordinator.sweep.index import CellRecord, SweepIndex

Figure = dict[str, Any]
FLAGGED_COLOR = "#9e9e9e"


def parameters_text(cell: CellRecord) -> str:
    """A cell's parameters in a few words: the last part of each path, and its value."""
    return ", ".join(f"{path.rsplit('.', 1)[-1]}={value}"
                     for path, value in cell.parameters.items()) or "-"


def cell_label(cell: CellRecord) -> str:
    return f"{cell.inventory}: {parameters_text(cell)}"


def _measured(index: SweepIndex) -> list[CellRecord]:
    return [cell for cell in index.cells if cell.headline is not None]


def _inventory_colors(index: SweepIndex) -> dict[str, str]:
    names = dict.fromkeys(cell.inventory for cell in index.cells)
    return {name: COLORS[position % len(COLORS)] for position, name in enumerate(names)}


def _bound_line(summary: SweepSummary, axis: str = "y") -> list[dict[str, Any]]:
    if summary.p99_bound_usec is None:
        return []
    value = summary.p99_bound_usec / USEC_PER_MS
    return [{"type": "line", "xref": "paper", "yref": axis, "x0": 0, "x1": 1, "y0": value,
             "y1": value, "line": {"dash": "dash", "color": "#b00020", "width": 1}}]


def per_cell_figure(index: SweepIndex, summary: SweepSummary) -> Figure:
    """Throughput (top) and p99 (bottom) of every cell that measured something, in the
    index's order; flagged cells grey and labelled "not ranked", the p99 bound dashed."""
    cells = _measured(index)
    colors = _inventory_colors(index)
    labels = [cell_label(cell) for cell in cells]
    bar_colors = [FLAGGED_COLOR if cell.flags else colors[cell.inventory] for cell in cells]
    notes = [f"flagged: {', '.join(cell.flags)} (not ranked)" if cell.flags else "clean"
             for cell in cells]
    common: dict[str, Any] = {"type": "bar", "x": labels, "customdata": notes,
                              "marker": {"color": bar_colors}, "showlegend": False}
    traces = [
        {**common, "name": "ops/s", "y": [c.headline.ops_per_sec if c.headline else None
                                          for c in cells],
         "hovertemplate": "%{x}<br>%{y:,.0f} ops/s<br>%{customdata}<extra></extra>",
         "xaxis": "x", "yaxis": "y"},
        {**common, "name": "p99", "y": [c.headline.p99_usec / USEC_PER_MS if c.headline
                                        else None for c in cells],
         "hovertemplate": "%{x}<br>p99 %{y:,.3f} ms<br>%{customdata}<extra></extra>",
         "xaxis": "x2", "yaxis": "y2"},
    ]
    return {"data": traces, "layout": {
        "title": {"text": "throughput and p99 per cell (grey: flagged, not ranked)"},
        "xaxis": {"anchor": "y", "matches": "x2", "showticklabels": False},
        "xaxis2": {"anchor": "y2", "automargin": True},
        "yaxis": {"domain": [0.55, 1.0], "title": {"text": "ops/s"}, "rangemode": "tozero"},
        "yaxis2": {"domain": [0.0, 0.45], "title": {"text": "p99 (ms)"},
                   "rangemode": "tozero"},
        "shapes": _bound_line(summary, "y2"), "height": 560, "margin": {"t": 50},
    }}


def curves_figure(index: SweepIndex, summary: SweepSummary) -> Figure:
    """Per inventory, its clean cells' p99 against throughput, joined in order of throughput,
    the knee a star; flagged cells as grey crosses, apart from every curve."""
    colors = _inventory_colors(index)
    knees = {s.inventory: s.knee for s in summary.inventories}
    traces: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for inventory, color in colors.items():
        cells = [c for c in _measured(index) if c.inventory == inventory]
        clean = sorted((c for c in cells if c.clean),
                       key=lambda c: c.headline.ops_per_sec if c.headline else 0.0)
        traces.append(_points(clean, inventory, "lines+markers",
                              {"color": color, "size": 7}, {"color": color, "width": 2}))
        flagged = [c for c in cells if not c.clean]
        if flagged:
            traces.append(_points(flagged, f"{inventory}: flagged (not ranked)", "markers",
                                  {"color": FLAGGED_COLOR, "symbol": "x", "size": 9}, None))
        chosen = knees.get(inventory)
        if chosen is not None and chosen.headline is not None:
            traces.append(_points([chosen], f"{inventory}: knee", "markers",
                                  {"color": color, "symbol": "star", "size": 16,
                                   "line": {"color": "#222", "width": 1}}, None))
            annotations.append({"x": chosen.headline.ops_per_sec,
                                "y": chosen.headline.p99_usec / USEC_PER_MS,
                                "text": f"knee ({parameters_text(chosen)})",
                                "showarrow": True, "arrowhead": 2, "ax": 30, "ay": -30})
    return {"data": traces, "layout": {
        "title": {"text": "throughput against p99 per inventory (★ the knee: highest ops/s "
                          "÷ p99 among clean cells)"},
        "xaxis": {"title": {"text": "throughput (ops/s)"}, "rangemode": "tozero"},
        "yaxis": {"title": {"text": "p99 (ms)"}, "rangemode": "tozero"},
        "shapes": _bound_line(summary), "annotations": annotations,
        "legend": {"orientation": "h"}, "height": 480, "margin": {"t": 50},
    }}


def _points(cells: Sequence[CellRecord], name: str, mode: str, marker: dict[str, Any],
            line: dict[str, Any] | None) -> dict[str, Any]:
    trace: dict[str, Any] = {
        "type": "scatter", "mode": mode, "name": name, "marker": marker,
        "x": [c.headline.ops_per_sec if c.headline else None for c in cells],
        "y": [c.headline.p99_usec / USEC_PER_MS if c.headline else None for c in cells],
        "text": [parameters_text(c) + (f" [{', '.join(c.flags)}]" if c.flags else "")
                 for c in cells],
        "hovertemplate": "%{text}<br>%{x:,.0f} ops/s, p99 %{y:,.3f} ms<extra></extra>"}
    if line is not None:
        trace["line"] = line
    return trace


def price_figure(summary: SweepSummary) -> Figure | None:
    """Ops/s per price per hour of each priced inventory (its best clean cell within the bound,
    else its knee), the cheapest meeting the bound outlined; None when no price is given."""
    priced = [s for s in summary.inventories if s.ops_per_price is not None]
    if not priced:
        return None
    cheapest = summary.cheapest.inventory if summary.cheapest is not None else None
    return {"data": [{
        "type": "bar", "x": [s.inventory for s in priced],
        "y": [s.ops_per_price for s in priced],
        "text": [f"{s.price_per_hour:g}/h" + (" (cheapest within the bound)"
                                              if s.inventory == cheapest else "")
                 for s in priced],
        "textposition": "auto",
        "marker": {"color": ["#2e7d32" if s.inventory == cheapest else "#1f77b4"
                             for s in priced],
                   "line": {"color": "#222", "width": [3 if s.inventory == cheapest else 0
                                                       for s in priced]}},
        "hovertemplate": "%{x}<br>%{y:,.0f} ops/s per price per hour<br>%{text}<extra></extra>",
    }], "layout": {
        "title": {"text": "ops/s per price per hour (best clean cell within the bound, else "
                          "the knee)"},
        "yaxis": {"title": {"text": "ops/s per (price/h)"}, "rangemode": "tozero"},
        "height": 400, "margin": {"t": 50},
    }}
