"""What `coord run` shows while it runs, and the summary it prints at the end.

One live region: the deployment's per-host stages first, then per client host its phase, the
last interval's throughput and p99, its errors, its CPU and its hottest load process in the
last interval its agent sampled, and the verdicts of the last finished repetition that concern
it; then per server host its CPU and its server process's. While the first client preloads the
keyspace, a progress bar: keys done of the total, the rate and the time left. Each finished
repetition leaves one line above the live region. The summary puts the verdicts with their
evidence above the figures. Nothing here computes a figure or decides a verdict: it only shows
what the run reports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from agent.messages import LoadProgress, LoadState
from agent.metrics.model import MetricsInterval
from coordinator.core import marks
from coordinator.core.baselines import BaselinePair
from coordinator.core.errors import HostError
from coordinator.core.figures import LATENCY_FIGURES
from coordinator.core.schedule_rows import (
    SCHEDULE_HEADERS,
    ScheduleRow,
    schedule_cells,
    schedule_rows,
)
from coordinator.core.shards import SHARD_HEADERS, ShardRow, shard_cells, shard_rows
from coordinator.core.target_rows import TARGET_HEADERS, TargetRow, target_cells, target_rows
from coordinator.core.verdict_records import Evidence, Verdict
from coordinator.remote.fanout import ProgressView
from coordinator.results import Repetition, ResultsDocument, SpreadRecord
from coordinator.results.readings import beside_baseline_lines


def preload_line(host: str, done: int, total: int, elapsed_s: float) -> str:
    """The preload's progress in words: keys done of the total, the rate so far, the time
    left at that rate ("-" until there is a rate)."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    share = 100 * done / total if total else 100.0
    left = f"{(total - done) / rate:,.0f} s left" if rate > 0 else "- s left"
    return (f"preloading the keyspace from {host}: {done:,}/{total:,} keys ({share:.0f} %), "
            f"{rate:,.0f} keys/s, {left}")


def _ms(usec: float) -> str:
    return f"{usec / 1000:.3f}"


class RunConsoleView:
    """The live view of a run; a context manager around rich's ``Live``."""

    def __init__(self, console: Console, hosts: list[str]) -> None:
        self._console = console
        self._lock = threading.Lock()
        self._stages: dict[str, str] = dict.fromkeys(hosts, "waiting")
        self._clients: dict[str, LoadProgress] = {}
        self._sampled: dict[str, MetricsInterval] = {}
        self._header = "deploying agents"
        self._elapsed = (0.0, 0.0)
        self._judged: list[Verdict] = []
        self._preload_started: float | None = None  # monotonic: the first preload progress
        self._live = Live(self._render(), console=console, refresh_per_second=4,
                          transient=True)

    def __enter__(self) -> RunConsoleView:
        self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._live.__exit__(kind, value, traceback)

    def deploying(self) -> ProgressView:
        """This view, receiving per-host deployment stages."""
        return self

    def stage(self, host: str, stage: str, detail: str = "") -> None:
        """A host entered a deployment stage."""
        with self._lock:
            self._stages[host] = stage
        self._refresh()

    def failed(self, host: str, stage: str, error: HostError) -> None:
        """A host failed to deploy."""
        with self._lock:
            self._stages[host] = f"failed ({stage}): {error.reason}"
        self._refresh()

    def done(self, host: str, detail: str = "") -> None:
        """A host's agent is ready."""
        with self._lock:
            self._stages[host] = "ready"
        self._refresh()

    def repetition(self, index: int, total: int) -> None:
        """Repetition ``index`` (from 0) of ``total`` is starting."""
        with self._lock:
            self._header = f"repetition {index + 1}/{total}"
            self._clients = {}
            self._sampled = {}
            self._elapsed = (0.0, 0.0)
        self._refresh()

    def progress(self, elapsed_s: float, total_s: float, clients: dict[str, LoadProgress],
                 hosts: Mapping[str, MetricsInterval]) -> None:
        """The latest progress of every client, and the last interval each host sampled."""
        with self._lock:
            self._clients = dict(clients)
            self._sampled.update(hosts)
            self._elapsed = (elapsed_s, total_s)
            if self._preload_started is None and any(
                    p.preload_total for p in clients.values()):
                self._preload_started = time.monotonic()
        self._refresh()

    def repetition_done(self, repetition: Repetition) -> None:
        """Leave a line with the repetition's figures above the live region."""
        with self._lock:
            self._judged = list(repetition.verdicts)
        latency = repetition.latency_usec
        errors = sum(repetition.errors.values())
        marks = f"  [yellow]{', '.join(repetition.marks)}[/]" if repetition.marks else ""
        self._console.print(
            f"repetition {repetition.index}: {repetition.ops_per_sec:,.0f} ops/s  "
            f"p50 {_ms(latency.p50)} ms  p99 {_ms(latency.p99)} ms  max {_ms(latency.max)} ms  "
            f"errors {errors}  start skew {repetition.start_skew_usec:.0f} µs{marks}"
        )

    def baseline_pair(self, when: str, pair: BaselinePair) -> None:
        """Leave a line with a baseline pair's figures (or its error) above the live region."""
        self._console.print(f"baseline {when}: {pair_line(pair)}", markup=False)

    def _refresh(self) -> None:
        self._live.update(self._render())

    def _render(self) -> RenderableType:
        with self._lock:
            preloading = [(host, p) for host, p in sorted(self._clients.items())
                          if p.state is LoadState.PREPARING and p.preload_total]
            if preloading and self._preload_started is not None:
                host, progress = preloading[0]
                done, keys = progress.preload_done or 0, progress.preload_total or 0
                return Group(Text(f"{self._header}: preparing"),
                             ProgressBar(total=float(keys), completed=float(done), width=60),
                             Text(preload_line(host, done, keys,
                                               time.monotonic() - self._preload_started)))
            if not self._clients:
                table = Table(title=self._header, title_justify="left")
                table.add_column("host")
                table.add_column("stage")
                for host, stage in sorted(self._stages.items()):
                    table.add_row(host, stage)
                return table
            elapsed, total = self._elapsed
            table = Table(title=f"{self._header}: {elapsed:.0f}/{total:.0f} s",
                          title_justify="left")
            for column in ("host", "phase", "ops/s", "p99 ms", "errors", "cpu %",
                           "hottest process", "verdict"):
                table.add_column(column, justify="right" if column in (
                    "ops/s", "p99 ms", "errors", "cpu %") else "left")
            for host, progress in sorted(self._clients.items()):
                ops = "-" if progress.ops_per_sec is None else f"{progress.ops_per_sec:,.0f}"
                p99 = "-" if progress.p99_usec is None else _ms(progress.p99_usec)
                running = progress.state is LoadState.RUNNING
                phase = progress.phase if running else progress.state.value
                sampled = self._sampled.get(host)
                table.add_row(host, phase or progress.state.value, ops, p99, str(progress.errors),
                              cpu_cell(sampled), hottest_load_cell(sampled),
                              verdict_cell(self._judged, host))
            for host, sampled in sorted(self._sampled.items()):
                if host not in self._clients:
                    table.add_row(host, "server", "", "", "", cpu_cell(sampled),
                                  server_cell(sampled), verdict_cell(self._judged, host))
            return table


def cpu_cell(sampled: MetricsInterval | None) -> str:
    """The host's CPU busy in its last sampled interval, % of all its cores."""
    if sampled is None or sampled.cpu is None:
        return "-"
    return f"{sampled.cpu.busy:.0f}"


def hottest_load_cell(sampled: MetricsInterval | None) -> str:
    """The load process that used the most CPU, named as the verdicts name it (its rank in
    pid order), with its CPU in % of one core, and the part it spent busy-polling."""
    if sampled is None or not sampled.load_processes:
        return "-"
    ranks = {pid: rank for rank, pid in
             enumerate(sorted(p.pid for p in sampled.load_processes), start=1)}
    hottest = max(sampled.load_processes, key=lambda p: p.cpu_percent)
    cell = f"load process {ranks[hottest.pid]}: {hottest.cpu_percent:.0f} % of a core"
    if hottest.busy_poll_percent:
        cell += f" ({hottest.busy_poll_percent:.0f} % polling)"
    return cell


def server_cell(sampled: MetricsInterval) -> str:
    """The target servers' processes, their CPU in % of one core, each with the target ports
    it listens on when recorded (a host running two targets: which is which)."""
    if not sampled.server_processes:
        return "-"
    return ", ".join(f"{p.name}{''.join(f' :{port}' for port in p.ports)}: "
                     f"{p.cpu_percent:.0f} % of a core" for p in sampled.server_processes)


def verdict_cell(judged: list[Verdict], host: str) -> str:
    """The last finished repetition's flagged verdicts about ``host`` (or about every host):
    "-" before any, "clear" when none flagged."""
    if not judged:
        return "-"
    flagged = [v.name for v in judged if v.state == "flagged" and (not v.hosts or host in v.hosts)]
    return ", ".join(dict.fromkeys(flagged)) or "clear"


def _intervals(indices: list[int]) -> str:
    """``[5, 6, 7, 9]`` -> ``5-7, 9``."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)


def _evidence_line(evidence: Evidence) -> str:
    where = f" on {evidence.host}" if evidence.host else ""
    measured = "" if evidence.value is None else f" {evidence.value:,.6g}"
    limit = "" if evidence.threshold is None else f", threshold {evidence.threshold:,.6g}"
    spans = f", intervals {_intervals(evidence.intervals)}" if evidence.intervals else ""
    return f"    {evidence.detail} ({evidence.metric}{where}:{measured}{limit}{spans})"


def _style(verdict: Verdict) -> str:
    if verdict.state == "undecided":
        return "dim"
    if verdict.name == marks.SERVER_BOUND.name:
        return "green"
    return "bold red" if marks.MARKS[verdict.name].strict else "yellow"


def verdict_report(document: ResultsDocument) -> RenderableType:
    """The verdicts, with their evidence, in words a user acts on: each flagged one per
    repetition, each undecided reason once, then the kinds that were clear."""
    judged: dict[str, list[Verdict]] = {}
    for repetition in document.repetitions:
        for verdict in repetition.verdicts:
            judged.setdefault(verdict.name, []).append(verdict)
    for verdict in document.verdicts:
        if marks.MARKS[verdict.name].scope == "run":
            judged.setdefault(verdict.name, []).append(verdict)
    if not judged:
        return Text("verdicts: none (no repetition was judged)")
    lines: list[Text] = [Text("verdicts", style="bold")]
    clear = []
    for kind in marks.VERDICTS:
        verdicts = judged.get(kind.name, [])
        flagged = [v for v in verdicts if v.state == "flagged"]
        undecided = list(dict.fromkeys(v.summary for v in verdicts if v.state == "undecided"))
        for verdict in flagged:
            where = ("across repetitions" if kind.scope == "run" else
                     f"repetition {', '.join(map(str, verdict.repetitions))}")
            lines.append(Text(f"{kind.name} ({where}): {verdict.summary}",
                              style=_style(verdict)))
            lines += [Text(_evidence_line(e)) for e in verdict.evidence]
        if not flagged:
            lines += [Text(f"{kind.name}: {summary}", style="dim") for summary in undecided]
        if verdicts and not flagged and not undecided:
            clear.append(kind.name)
    if clear:
        lines.append(Text(f"clear: {', '.join(clear)}", style="green"))
    return Group(*lines)


def pair_line(pair: BaselinePair) -> str:
    """One baseline pair in a line: its TCP_RR medians, or why it failed."""
    if pair.median is None:
        return f"{pair.label}: {pair.error}"
    median = pair.median
    line = (f"{pair.label}: TCP_RR p50 {median.p50_usec:g} µs, mean {median.mean_usec:g} µs, "
            f"p99 {median.p99_usec:g} µs, {median.transactions_per_sec:,.0f} transactions/s")
    return line + (f" ({pair.error})" if pair.error else "")


def baseline_table(pairs: Sequence[BaselinePair], title: str) -> RenderableType:
    """The baseline's rows: per pair, the medians across iterations (µs) and the rate."""
    table = Table(title=title, title_justify="left")
    columns = ("pair", "min", "mean", "p50", "p90", "p99", "max", "stddev", "trans/s",
               "p50 spread", "Mbit/s", "note")
    for column in columns:
        table.add_column(column, justify="left" if column in ("pair", "note") else "right")
    for pair in pairs:
        median = pair.median
        figures = ["-"] * 8 if median is None else [
            f"{median.min_usec:g}", f"{median.mean_usec:g}", f"{median.p50_usec:g}",
            f"{median.p90_usec:g}", f"{median.p99_usec:g}", f"{median.max_usec:g}",
            f"{median.stddev_usec:g}", f"{median.transactions_per_sec:,.0f}"]
        notes = [note for note in (pair.error, "inconsistent" if pair.inconsistent else None)
                 if note]
        stream = "-" if pair.stream_mbps is None else f"{pair.stream_mbps:,.0f}"
        table.add_row(pair.label, *figures, f"{pair.p50_spread_usec:g}", stream,
                      "; ".join(notes))
    return table


def shard_tables(rows: list[ShardRow]) -> list[RenderableType]:
    """A Redis Cluster's primaries as a table (none for a single server): medians across
    repetitions, each one's share of the replies and that share against an even spread."""
    return _extra_tables("per primary (medians across repetitions)", SHARD_HEADERS,
                         [shard_cells(row) for row in rows])


def schedule_tables(rows: list[ScheduleRow]) -> list[RenderableType]:
    """An open loop's schedule per client and repetition as a table (none for a closed
    loop): whether the rate was kept, and whose fault the late requests were."""
    return _extra_tables("open-loop schedule (the window's intervals)", SCHEDULE_HEADERS,
                         [schedule_cells(row) for row in rows])


def target_tables(rows: list[TargetRow]) -> list[RenderableType]:
    """A run loading several servers: one row per server (none for one server), medians
    across repetitions; the summary above is the first server's."""
    title = (f"per server (medians across repetitions; the summary above is {rows[0].server}'s)"
             if rows else "")
    return _extra_tables(title, TARGET_HEADERS, [target_cells(row) for row in rows])


def _extra_tables(title: str, headers: tuple[str, ...],
                  rows: list[tuple[str, ...]]) -> list[RenderableType]:
    """One of the tables under the summary, as a list: empty without rows."""
    if not rows:
        return []
    table = Table(*headers, title=title, title_justify="left")
    for row in rows:
        table.add_row(*row)
    return [table]


def summary_table(document: ResultsDocument) -> RenderableType:
    """The run's figures: median across repetitions, with min, max and variation."""
    summary = document.summary
    if summary is None:
        return Text("no repetition finished")
    table = Table(title=f"summary over {summary.repetitions} repetition(s)",
                  title_justify="left")
    for column in ("figure", "median", "min", "max", "cv"):
        table.add_column(column, justify="left" if column == "figure" else "right")

    def row(name: str, spread: SpreadRecord, scale: float, unit: str) -> None:
        cv = "-" if spread.cv is None else f"{spread.cv:.1%}"
        table.add_row(f"{name} ({unit})", f"{spread.median / scale:,.3f}",
                      f"{spread.min / scale:,.3f}", f"{spread.max / scale:,.3f}", cv)

    row("throughput", summary.ops_per_sec, 1, "ops/s")
    latency = summary.latency_usec
    for name in LATENCY_FIGURES:
        row(name, getattr(latency, name), 1000, "ms")
    row("error rate", summary.error_rate, 0.01, "%")
    parts: list[RenderableType] = [verdict_report(document), table,
                                   *shard_tables(shard_rows(document.repetitions)),
                                   *target_tables(target_rows(document.repetitions)),
                                   *schedule_tables(schedule_rows(document.repetitions))]
    baselines = document.baselines
    if baselines is not None and baselines.before:
        parts.append(baseline_table(baselines.before, "netperf baseline before the benchmark "
                                    "(µs; medians across iterations)"))
    if baselines is not None and baselines.after:
        parts.append(baseline_table(baselines.after, "netperf baseline after the benchmark"))
    parts += [Text(line) for line in beside_baseline_lines(document)]
    if baselines is not None:
        parts += [Text(f"network drift: {line}") for line in baselines.drift]
    parts.append(Text(f"run marks: {', '.join(document.marks) or 'none'}"))
    return Group(*parts)

