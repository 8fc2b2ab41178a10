"""The report in the terminal (``coord report DIR --text``): the HTML report's content, with
the spectrum as a table of percentiles and the time series as per-client ranges."""

from __future__ import annotations

import shlex
import statistics

import yaml
from rich.console import Group, RenderableType
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from coordinator.report.data import KEY_LEVELS, NOT_RECORDED, FactsTable, ReportData
from coordinator.report.html import (
    BASELINE_HEADERS,
    SUMMARY_HEADERS,
    baseline_cells,
    summary_cells,
)
from coordinator.run.view import schedule_tables, shard_tables, target_tables

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
    parts += [Rule("summary"), _summary(data), *shard_tables(data.shards),
              *target_tables(data.targets), *schedule_tables(data.schedules),
              Rule("latency spectrum (ms)"), _spectrum(data),
              Rule("over time"), _timelines(data),
              Rule("host CPU (%)"), _host_cpu(data),
              Rule("network baselines (netperf)"), _baselines(data),
              Rule("platform"), _platform(data.platform),
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
                  "p99 max (ms)", "max (ms)", "longest gap (ms)", "window (s)")
    for timeline in data.timelines:
        window = ("-" if timeline.window_s is None
                  else f"{timeline.window_s[0]:g}-{timeline.window_s[1]:g}")
        for series in timeline.series:
            ops = series.ops_per_sec or [0.0]
            p99s = [v for v in series.p99_usec if v is not None] or [0]
            table.add_row(str(timeline.repetition), series.host, str(len(series.seconds)),
                          f"{min(ops):,.0f}", f"{statistics.median(ops):,.0f}",
                          f"{max(ops):,.0f}", f"{max(p99s) / 1000:,.3f}",
                          _largest_ms(series.max_usec), _largest_ms(series.gap_usec), window)
    return table


def _largest_ms(values: list[int | None]) -> str:
    found = [v for v in values if v is not None]
    return f"{max(found) / 1000:,.3f}" if found else "-"


def _range(values: list[float | None]) -> str:
    found = [v for v in values if v is not None]
    return f"{statistics.median(found):,.1f} / {max(found):,.1f}" if found else "-"


def _servers_range(percent: dict[str, list[float | None]]) -> str:
    """Each target's median / max, named when the host runs several."""
    if not percent:
        return "-"
    return "; ".join(f"{target}: {_range(values)}" if target else _range(values)
                     for target, values in percent.items())


def _host_cpu(data: ReportData) -> RenderableType:
    if data.host_cpu is None:
        return Text(NOT_RECORDED, style="dim italic")
    table = Table("repetition", "host", "roles", "busy median / max",
                  "hottest load process median / max", "server processes median / max",
                  "not sampled")
    for cpu in data.host_cpu:
        for line in cpu.lines:
            names = "/".join(line.hottest_load_names)
            table.add_row(str(cpu.repetition), line.host, ", ".join(line.roles),
                          _range(line.busy_percent),
                          _range(line.hottest_load_percent) + (f" ({names})" if names else ""),
                          _servers_range(line.server_percent), line.missing or "")
    return Group(table, Text("busy: % of all the host's cores; processes: % of one core"))


def _baselines(data: ReportData) -> RenderableType:
    section = data.baselines
    if section is None:
        return Text(NOT_RECORDED, style="dim italic")
    if section.skipped:
        return Text("skipped in this run (--no-baseline or baseline.enabled: false)",
                    style="dim italic")
    table = Table(*BASELINE_HEADERS)
    for row in section.rows:
        table.add_row(*baseline_cells(row))
    parts: list[RenderableType] = [table]
    if section.benchmark_p50_usec is not None:
        parts.append(Text(f"benchmark p50 (median across repetitions): "
                          f"{section.benchmark_p50_usec:,.0f} µs"))
    parts += [Text(line) for line in section.beside]
    parts += [Text(f"network drift: {line}", style="yellow") for line in section.drift]
    return Group(*parts)


def _platform(tables: list[FactsTable] | None) -> RenderableType:
    if tables is None:
        return Text(NOT_RECORDED, style="dim italic")
    rendered: list[RenderableType] = []
    for facts_table in tables:
        table = Table("", *facts_table.columns, title=facts_table.title, title_justify="left")
        labels = list(dict.fromkeys(k for facts in facts_table.columns.values() for k in facts))
        for label in labels:
            table.add_row(label, *(Text(facts.get(label, ""))
                                   for facts in facts_table.columns.values()))
        rendered.append(table)
    return Group(*rendered)


def _command(data: ReportData) -> str:
    value = data.command_line
    if value is None:
        return NOT_RECORDED
    return shlex.join(str(part) for part in value) if isinstance(value, list) else str(value)
