"""``coord compare``'s output: the set-up differences first, then per figure each run's median
with its range, the change against the first run, and noise or beyond-noise; as rich
renderables for the terminal, or as an offline HTML page with the runs' spectra overlaid."""

from __future__ import annotations

import html
import json

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from coordinator.report.compare import Comparison, RunFigure
from coordinator.report.data import Curve, Spectrum
from coordinator.report.html import LOADER, STYLE, packed_plotly
from coordinator.report.plots import spectrum_figure

NOISE_TEST = ("beyond noise: the repetitions' min-max ranges do not overlap "
              "(docs/reports.md explains why this test)")


def _value(value: float, unit: str) -> str:
    if unit == "µs":
        return f"{value / 1000:,.3f} ms"
    if unit == "fraction":
        return f"{value:.3%}"
    return f"{value:,.1f} {unit}"


def _cell(run: RunFigure, unit: str) -> str:
    text = f"{_value(run.median, unit)} [{_value(run.low, unit)} – {_value(run.high, unit)}]"
    if run.change is not None:
        verdict = ("REGRESSION" if run.regression
                   else "beyond noise" if run.beyond_noise else "noise")
        text += f"\n{run.change:+.1%} {verdict}"
    return text


def comparison_text(comparison: Comparison) -> RenderableType:
    parts: list[RenderableType] = []
    note = comparison.drivers_note()
    if note is not None:
        parts.append(Text(note, style="bold"))
    if comparison.differences:
        table = Table("set-up difference", *comparison.labels, title="set-ups differ",
                      title_justify="left")
        for difference in comparison.differences:
            table.add_row(Text(difference.what),
                          *(Text(json.dumps(v)) for v in difference.values))
        parts.append(table)
    else:
        parts.append(Text("set-ups: no difference in inventory, load, versions or platform"))
    table = Table("figure", *comparison.labels, title=Text(
        "median [min – max] of the repetitions; change against the first run"),
        title_justify="left")
    for figure in comparison.figures:
        table.add_row(figure.kind.name,
                      *(Text(_cell(run, figure.kind.unit)) for run in figure.runs))
    parts += [table, Text(NOISE_TEST)]
    return Group(*parts)


def comparison_html(comparison: Comparison, spectra: list[Spectrum]) -> str:
    """The comparison as one offline page; ``spectra``: each run's merged spectrum curves, the
    run's label in place of the repetition's."""
    e = html.escape
    differences = "".join(
        f"<tr><td>{e(d.what)}</td>" + "".join(f"<td>{e(json.dumps(v))}</td>" for v in d.values)
        + "</tr>" for d in comparison.differences)
    head = "".join(f"<th>{e(label)}</th>" for label in comparison.labels)
    rows = "".join(
        f"<tr><td>{e(f.kind.name)}</td>"
        + "".join(f"<td>{e(_cell(run, f.kind.unit)).replace(chr(10), '<br>')}</td>"
                  for run in f.runs) + "</tr>" for f in comparison.figures)
    curves = [Curve(f"{label} {curve.label}", position + 1, True, curve.percentiles,
                    curve.latency_usec)
              for position, (label, spectrum) in enumerate(zip(comparison.labels, spectra,
                                                               strict=True))
              for curve in spectrum.curves if curve.merged]
    figure = json.dumps(spectrum_figure(Spectrum("runs overlaid", curves)),
                        separators=(",", ":")).replace("</", "<\\/")
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>coord compare</title><style>{STYLE}</style></head><body>"
        "<h1>coord compare</h1>"
        + (f"<p><strong>{e(note)}</strong></p>" if (note := comparison.drivers_note()) else "")
        + "<h2>Set-up differences</h2>"
        + (f"<table><tr><th></th>{head}</tr>{differences}</table>" if differences
           else "<p>no difference in inventory, load, versions or platform</p>")
        + f"<h2>Figures</h2><table><tr><th></th>{head}</tr>{rows}</table><p>{e(NOISE_TEST)}</p>"
        "<h2>Latency spectra</h2><div class=\"plot\" data-figure=\"figure-0\"></div>"
        f'<script type="application/json" id="figure-0">{figure}</script>'
        f'<script type="text/plain" id="plotly-gzip">{packed_plotly()}</script>'
        f"<script>{LOADER}</script></body></html>\n")
