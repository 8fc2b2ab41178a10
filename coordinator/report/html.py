"""The report as one self-contained HTML file: works offline, readable on a laptop, printable.

plotly.js comes from the ``plotly`` package and is inlined gzip-compressed (base64), unpacked
by the browser's own ``DecompressionStream``: 4.8 MB of JavaScript then weighs about 1.9 MB,
which keeps a 20-client report under 5 MB. Nothing is fetched: no CDN, no font, no image.
The page sets ``data-plots-rendered`` on ``<body>`` once every plot is drawn (tests read it).
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
import shlex
from importlib import resources
from typing import Any

import yaml
from pydantic import JsonValue

from coordinator.core.errors import CoordError
from coordinator.core.schedule_rows import SCHEDULE_HEADERS, ScheduleRow, schedule_cells
from coordinator.core.shards import SHARD_HEADERS, ShardRow, shard_cells
from coordinator.core.target_rows import TARGET_HEADERS, TargetRow, target_cells
from coordinator.report.data import (
    NOT_RECORDED,
    BaselineRow,
    BaselineSection,
    FactsTable,
    ReportData,
    SummaryRow,
)
from coordinator.report.plots import cpu_figure, spectrum_figure, timeline_figure


class PlotlyMissing(CoordError):
    """The plotly package (coord's dependency that carries plotly.js) is not installed."""


MAX_GENERIC_ROWS = 200
"""An optional section's list longer than this is cut (the rest is in results.json)."""

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;
color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}
tr.median{font-weight:bold;background:#f4f4f4}tr.flagged-row{background:#fdecec}
.flagged{color:#b00020;font-weight:bold}.undecided{color:#a56500}.clear{color:#2e7d32}
.invalid{color:#b00020;font-weight:bold}.warning{color:#a56500}.note{color:#555}
.spread{font-weight:normal;color:#555;font-size:.85em}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}
.plot{width:100%;min-height:400px;page-break-inside:avoid}
.missing{color:#777;font-style:italic}
@media print{body{max-width:none}.plot{break-inside:avoid}details{display:block}}
"""

LOADER = """
(async function () {
  const packed = document.getElementById('plotly-gzip').textContent;
  const bytes = Uint8Array.from(atob(packed), c => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  const code = await new Response(stream).text();
  const script = document.createElement('script');
  script.textContent = code;
  document.head.appendChild(script);
  const plots = document.querySelectorAll('div.plot');
  for (const div of plots) {
    const figure = JSON.parse(document.getElementById(div.dataset.figure).textContent);
    await Plotly.newPlot(div, figure.data, figure.layout,
                         {displaylogo: false, responsive: true});
  }
  document.body.dataset.plotsRendered = String(plots.length);
})();
"""


@functools.lru_cache(maxsize=1)
def packed_plotly() -> str:
    """plotly.min.js from the installed plotly package, gzipped and base64-encoded."""
    try:
        source = resources.files("plotly") / "package_data" / "plotly.min.js"
        code = source.read_bytes()
    except (ModuleNotFoundError, OSError) as exc:
        raise PlotlyMissing(
            f"report.html not written: plotly.js cannot be read from the plotly package ({exc}); "
            "reinstall coord (scripts/install-python-env)") from exc
    return base64.b64encode(gzip.compress(code, 9, mtime=0)).decode("ascii")


def render_html(data: ReportData, invocation: str) -> str:
    """The report page of ``data``; ``invocation`` is the command that wrote it."""
    figures: list[tuple[str, dict[str, Any]]] = []

    def plot(figure: dict[str, Any]) -> str:
        name = f"figure-{len(figures)}"
        figures.append((name, figure))
        return f'<div class="plot" data-figure="{name}"></div>'

    body = [
        f"<h1>{_e(data.title)}</h1>",
        f"<p>status <b>{_e(data.status)}</b>, started {_e(data.created)}, finished "
        f"{_e(data.finished or '-')}; coord {_e(data.coord_version)}</p>",
        _verdicts(data), "<h2>Summary</h2>", _summary_table(data.rows), _shard_table(data.shards),
        _target_table(data.targets), _schedule_table(data.schedules),
        "<h2>Latency spectrum</h2>",
        *(plot(spectrum_figure(s)) for s in data.spectra if any(c.latency_usec for c in s.curves)),
        "<h2>Over time</h2>",
        *(plot(timeline_figure(t)) for t in data.timelines),
        "<h2>Host CPU</h2>",
        *((plot(cpu_figure(cpu)) for cpu in data.host_cpu) if data.host_cpu
          else [f'<p class="missing">{NOT_RECORDED}</p>']),
        *(_unsampled(data)),
        "<h2>Network baselines (netperf)</h2>", _baselines(data.baselines),
        "<h2>Platform</h2>", _platform(data.platform),
        "<h2>Agents</h2>", generic(data.agents),
        "<h2>Inventory as run</h2><p>secrets masked as ***</p>",
        f"<pre>{_e(yaml.safe_dump(data.inventory, sort_keys=False))}</pre>",
        "<h2>Provenance</h2>",
        f"<p>run command line: {_command_line(data.command_line)}<br>"
        f"report written by: <code>{_e(invocation)}</code> (coord {_e(data.coord_version)} "
        "wrote the run)</p>",
    ]
    return page(data.title, body, figures)


def page(title: str, body: list[str], figures: list[tuple[str, dict[str, Any]]]) -> str:
    """A self-contained page: ``body``'s HTML, each figure's JSON (drawn into the
    ``<div class="plot" data-figure=NAME>`` of the same name) and plotly.js inlined."""
    scripts = "".join(
        f'<script type="application/json" id="{name}">{_json(figure)}</script>'
        for name, figure in figures)
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(body) + scripts
        + f'<script type="text/plain" id="plotly-gzip">{packed_plotly()}</script>'
        + f"<script>{LOADER}</script></body></html>\n"
    )


def _e(text: object) -> str:
    return html.escape(str(text))


def _json(figure: dict[str, Any]) -> str:
    """JSON that cannot end its ``<script>`` element early."""
    return json.dumps(figure, separators=(",", ":")).replace("</", "<\\/")


def _verdicts(data: ReportData) -> str:
    parts = ["<h2>Verdicts and warnings</h2>"]
    if data.failure:
        parts.append(f'<p class="flagged">run failed: {_e(data.failure)}</p>')
    items = []
    for line in data.verdicts:
        evidence = "".join(f"<li>{_e(fact)}</li>" for fact in line.evidence)
        items.append(f'<li><span class="{_e(line.state)}">{_e(line.state)}</span> '
                     f"<b>{_e(line.name)}</b> ({_e(line.scope)}): {_e(line.summary)}"
                     + (f"<ul>{evidence}</ul>" if evidence else "") + "</li>")
    parts.append(f"<ul>{''.join(items)}</ul>" if items
                 else '<p class="missing">no verdict recorded in this run</p>')
    marks = [f'<li><span class="{_e(w.severity)}">{_e(w.severity)}</span> <b>{_e(w.mark)}</b> '
             f"({_e(w.scope)}): {_e(w.meaning)}</li>" for w in data.warnings]
    parts.append(f"<ul>{''.join(marks)}</ul>" if marks else "<p>no mark on the run</p>")
    return "".join(parts)


SUMMARY_HEADERS = ("", "throughput (ops/s)", "p50 (ms)", "p90 (ms)", "p95 (ms)", "p99 (ms)",
                   "p99.9 (ms)", "max (ms)", "errors", "error rate", "start skew (µs)")


def summary_cells(row: SummaryRow) -> list[tuple[str, str]]:
    """Each cell of ``row`` as (value, spread key): shared with the terminal renderer."""
    return [
        (row.label, ""), (f"{row.ops_per_sec:,.1f}", "ops_per_sec"),
        *((f"{row.latency_usec[n] / 1000:,.3f}", n)
          for n in ("p50", "p90", "p95", "p99", "p999", "max")),
        (f"{row.errors:,.0f}", "errors"), (f"{row.error_rate:.3%}", "error_rate"),
        (f"{row.start_skew_usec:,.0f}", "start_skew_usec"),
    ]


def _shard_table(rows: list[ShardRow]) -> str:
    """A Redis Cluster's primaries (nothing for a single server)."""
    return _extra_table("Per primary", SHARD_HEADERS, [shard_cells(row) for row in rows],
                        "medians across repetitions; share: of every reply of the run; × even: "
                        "the share against an even spread over the primaries (1.00: its fair "
                        "part).")


def _target_table(rows: list[TargetRow]) -> str:
    """A run loading several servers: one row per server (nothing for one server)."""
    return _extra_table("Per server", TARGET_HEADERS, [target_cells(row) for row in rows],
                        "medians across repetitions, each server's figures merged over its own "
                        "clients only; the summary above is the first server's "
                        f"({rows[0].server})." if rows else "")


def _schedule_table(rows: list[ScheduleRow]) -> str:
    """An open loop's schedule per client and repetition (nothing for a closed loop)."""
    return _extra_table("Open-loop schedule", SCHEDULE_HEADERS,
                        [schedule_cells(row) for row in rows],
                        "the window's intervals; late: sent more than 1 ms after the intended "
                        "time; waiting on the server: their connection still awaited its "
                        "previous reply; not sent: the most queued at an interval's end; "
                        "behind: an interval with requests not sent or over 1 % late, own when "
                        "the load process itself fell behind (docs/drivers.md).")


def _extra_table(title: str, headers: tuple[str, ...], rows: list[tuple[str, ...]],
                 caption: str) -> str:
    """One of the tables under the summary, titled and captioned; nothing without rows."""
    if not rows:
        return ""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<h3>{_e(title)}</h3><table><tr>{head}</tr>{body}</table><p>{_e(caption)}</p>"


def _summary_table(rows: list[SummaryRow]) -> str:
    if not rows:
        return '<p class="missing">no repetition finished</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in SUMMARY_HEADERS)
    lines = []
    for row in rows:
        cells = []
        for value, key in summary_cells(row):
            spread = row.spread.get(key)
            note = f'<br><span class="spread">{_e(spread)}</span>' if spread else ""
            cells.append(f"<td>{_e(value)}{note}</td>")
        css = ' class="median"' if row.spread else ""
        lines.append(f"<tr{css}>{''.join(cells)}</tr>")
    return (f"<table><tr>{head}</tr>{''.join(lines)}</table>"
            "<p>median row: the median across repetitions; below it min–max and coefficient "
            "of variation. Latencies in ms (values recorded in µs).</p>")


def _unsampled(data: ReportData) -> list[str]:
    lines = [f"<li>repetition {cpu.repetition}, {_e(line.host)}: {_e(line.missing)}</li>"
             for cpu in data.host_cpu or [] for line in cpu.lines if line.missing]
    return [f"<p>not sampled:</p><ul>{''.join(lines)}</ul>"] if lines else []


BASELINE_HEADERS = ("", "pair", "p50 (µs)", "p90 (µs)", "p99 (µs)", "mean (µs)",
                    "transactions/s", "p50 spread (µs)", "Mbit/s", "note")


def baseline_cells(row: BaselineRow) -> list[str]:
    """A baseline row's cells: shared with the terminal renderer."""
    def number(value: float | None, pattern: str = "{:,.1f}") -> str:
        return "-" if value is None else pattern.format(value)
    return [row.when, row.pair, number(row.p50_usec), number(row.p90_usec),
            number(row.p99_usec), number(row.mean_usec),
            number(row.transactions_per_sec, "{:,.0f}"), number(row.p50_spread_usec),
            number(row.stream_mbps, "{:,.0f}"), row.note]


def _baselines(section: BaselineSection | None) -> str:
    if section is None:
        return f'<p class="missing">{NOT_RECORDED}</p>'
    if section.skipped:
        return '<p class="missing">skipped in this run (--no-baseline or ' \
               "baseline.enabled: false)</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in BASELINE_HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in baseline_cells(row)) + "</tr>"
                   for row in section.rows)
    parts = [f"<table><tr>{head}</tr>{body}</table>",
             "<p>medians across netperf TCP_RR iterations, one transaction in flight.</p>"]
    if section.benchmark_p50_usec is not None:
        parts.append(f"<p>benchmark p50 (median across repetitions): "
                     f"<b>{section.benchmark_p50_usec:,.0f} µs</b></p>")
    parts += [f"<p>{_e(line)}</p>" for line in section.beside]
    parts += [f'<p class="undecided">network drift: {_e(line)}</p>' for line in section.drift]
    return "".join(parts)


def _platform(tables: list[FactsTable] | None) -> str:
    if tables is None:
        return f'<p class="missing">{NOT_RECORDED}</p>'
    parts = []
    for table in tables:
        head = "".join(f"<th>{_e(name)}</th>" for name in table.columns)
        labels = list(dict.fromkeys(k for facts in table.columns.values() for k in facts))
        rows = "".join(f"<tr><th>{_e(label)}</th>" + "".join(
            f"<td>{_e(facts.get(label, ''))}</td>" for facts in table.columns.values())
            + "</tr>" for label in labels)
        parts.append(f"<h3>{_e(table.title)}</h3><table><tr><th></th>{head}</tr>{rows}</table>")
    return "".join(parts)


def _command_line(value: JsonValue | None) -> str:
    if value is None:
        return f'<span class="missing">{NOT_RECORDED}</span>'
    text = shlex.join(str(part) for part in value) if isinstance(value, list) else str(value)
    return f"<code>{_e(text)}</code>"


def generic(value: JsonValue) -> str:
    """Any JSON value as nested tables: an object as key/value rows, a list of objects as a
    table with a column per key, anything else as text."""
    if isinstance(value, dict):
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{generic(v)}</td></tr>" for k, v in value.items())
        return f"<table>{rows}</table>"
    if isinstance(value, list):
        shown, rest = value[:MAX_GENERIC_ROWS], len(value) - MAX_GENERIC_ROWS
        more = f"<p>… {rest} more in results.json</p>" if rest > 0 else ""
        if shown and all(isinstance(item, dict) for item in shown):
            keys = list(dict.fromkeys(k for item in shown if isinstance(item, dict) for k in item))
            head = "".join(f"<th>{_e(k)}</th>" for k in keys)
            body = "".join(
                "<tr>" + "".join(f"<td>{generic(item.get(k))}</td>" for k in keys) + "</tr>"
                for item in shown if isinstance(item, dict))
            return f"<table><tr>{head}</tr>{body}</table>{more}"
        return _e(", ".join(json.dumps(item) if isinstance(item, (dict, list)) else str(item)
                            for item in shown)) + more
    return _e("-" if value is None else value)
