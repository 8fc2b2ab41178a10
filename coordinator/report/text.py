"""The report in the terminal (``coord report DIR --text``): the HTML report's content, with
the spectrum as a table of percentiles and the time series as per-client ranges."""

from __future__ import annotations

import statistics

import yaml
from rich.console import Group, RenderableType
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from coordinator.report.data import KEY_LEVELS, NOT_RECORDED, ReportData
from coordinator.report.html import SUMMARY_HEADERS, summary_cells

STATE_STYLES = {"flagged": "bold red", "undecided": "yellow", "clear": "green",
                "invalid": "bold red", "warning": "yellow", "note": "dim"}


def render_text(data: ReportData, invocation: str) -> RenderableType:
    """Every section of the report, for a rich console."""
    parts: list[RenderableType] = [
        Text(data.title, style="bold"),
        Text(f"status {data.status}, started {data.created}, finished {data.finished or '-'}; "
             f"coord {data.coord_version}"),
        Rule("verdicts and warnings"),
    ]
    if data.failure:
        parts.append(Text(f"run failed: {data.failure}", style="bold red"))
    if not data.verdicts:
        parts.append(Text("no verdict recorded in this run", style="dim italic"))
    for line in data.verdicts:
        parts.append(Text.assemble((line.state, STATE_STYLES.get(line.state, "")),
                                   f" {line.name} ({line.scope}): {line.summary}"))
        parts += [Text(f"    {fact}") for fact in line.evidence]
    for warning in data.warnings:
        parts.append(Text.assemble((warning.severity, STATE_STYLES.get(warning.severity, "")),
                                   f" {warning.mark} ({warning.scope}): {warning.meaning}"))
    parts += [Rule("summary"), _summary(data), Rule("latency spectrum (ms)"), _spectrum(data),
              Rule("over time"), _timelines(data),
              Rule("host CPU"), _optional(data.host_metrics),
              Rule("network baselines (netperf)"), _optional(data.baselines),
              Rule("platform"), _optional(data.platform),
              Rule("inventory as run (secrets masked)"),
              Text(yaml.safe_dump(data.inventory, sort_keys=False).rstrip()),
              Rule("provenance"),
              Text(f"run command line: {_command(data)}\nreport written by: {invocation}")]
    return Group(*parts)


def _summary(data: ReportData) -> RenderableType:
    if not data.rows:
        return Text("no repetition finished")
    table = Table(*SUMMARY_HEADERS)
    for row in data.rows:
        cells = [value + (f"\n{row.spread[key]}" if key in row.spread else "")
                 for value, key in summary_cells(row)]
        table.add_row(*cells, style="bold" if row.spread else None)
    return table


def _spectrum(data: ReportData) -> RenderableType:
    table = Table("command", "line", *(f"{level:g}%" for level in KEY_LEVELS), "max")
    for spectrum in data.spectra:
        for line in spectrum.curves:
            if not line.merged or not line.latency_usec:
                continue
            values = [line.at_levels.get(level) for level in (*KEY_LEVELS, 100.0)]
            table.add_row(spectrum.command, line.label,
                          *(f"{v / 1000:,.3f}" if v is not None else "-" for v in values))
    return Group(table, Text("-: fewer replies than 1/(1-p), the level is not reached"))


def _timelines(data: ReportData) -> RenderableType:
    table = Table("repetition", "client", "intervals", "replies/s min", "median", "max",
                  "p99 max (ms)", "window (s)")
    for timeline in data.timelines:
        window = ("-" if timeline.window_s is None
                  else f"{timeline.window_s[0]:g}-{timeline.window_s[1]:g}")
        for series in timeline.series:
            ops = series.ops_per_sec or [0.0]
            p99s = [v for v in series.p99_usec if v is not None] or [0]
            table.add_row(str(timeline.repetition), series.host, str(len(series.seconds)),
                          f"{min(ops):,.0f}", f"{statistics.median(ops):,.0f}",
                          f"{max(ops):,.0f}", f"{max(p99s) / 1000:,.3f}",
                          window)
    return table


def _optional(value: object) -> RenderableType:
    if value is None:
        return Text(NOT_RECORDED, style="dim italic")
    return Text(yaml.safe_dump(value, sort_keys=False).rstrip())


def _command(data: ReportData) -> str:
    value = data.command_line
    if value is None:
        return NOT_RECORDED
    return " ".join(str(part) for part in value) if isinstance(value, list) else str(value)
