"""What a report shows, extracted from a results document. Pure: no I/O.

The HTML and terminal renderers (``html``, ``text``) only lay these records out, so everything
a report says is decided (and tested) here: verdicts first (flagged, then undecided), warnings
from the marks, the summary table with spread, the latency spectrum curves, the throughput and
p99 series, and the sections other parts of coord may add to the document (``optional``).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram
from pydantic import BaseModel, JsonValue

from agent.histograms import percentiles
from coordinator.core.baselines import BaselinePair
from coordinator.core.histograms import decode_histogram
from coordinator.core.host_series import server_series
from coordinator.core.marks import MARKS
from coordinator.core.metrics import HostMetrics
from coordinator.core.platform import host_facts, server_facts
from coordinator.core.schedule_rows import ScheduleRow, schedule_rows
from coordinator.core.shards import ShardRow, shard_rows
from coordinator.core.target_rows import TargetRow, target_rows
from coordinator.report.standard_files import histogram_params, interval_seconds
from coordinator.results.model import Repetition, ResultsDocument, Verdict
from coordinator.results.readings import beside_baseline_lines

NOT_RECORDED = "not recorded in this run"
SPECTRUM_TICKS_PER_HALF = 5
"""Points per halving of 1 - p on the spectrum, as HdrHistogram's percentile distribution."""
KEY_LEVELS = (50.0, 90.0, 99.0, 99.9, 99.99)
"""The percentiles a terminal spectrum lists (the ticks of the plot's axis)."""
SPECTRUM_MAX_FACTOR = 1e6
"""The spectrum stops at 1/(1-p) = 10^6 (99.9999 %) or where the count runs out."""
STATE_ORDER = {"flagged": 0, "undecided": 1, "clear": 2}

# The optional sections other parts of coord add to results.json: document field names tried
# in order. Wire a new field here; the renderers show whatever it holds, or NOT_RECORDED.
PLATFORM_FIELDS = ("platform",)
COMMAND_LINE_FIELDS = ("command_line", "argv")


@dataclass(frozen=True)
class VerdictLine:
    """One verdict as the report lists it."""

    scope: str
    name: str
    state: str
    summary: str
    evidence: list[str]


@dataclass(frozen=True)
class Warning:
    """A mark on the run or a repetition that weighs on the figures, with its meaning."""

    scope: str
    mark: str
    severity: str
    meaning: str


@dataclass(frozen=True)
class SummaryRow:
    """One row of the summary table: a repetition, or the median across them."""

    label: str
    ops_per_sec: float
    latency_usec: dict[str, float]
    errors: float
    error_rate: float
    start_skew_usec: float
    spread: dict[str, str] = field(default_factory=dict)
    """For the median row: figure -> "min-max (cv)" across repetitions."""


SUMMARY_LATENCIES = ("p50", "p90", "p95", "p99", "p999", "max")


@dataclass(frozen=True)
class Curve:
    """One line of the latency spectrum: latency (µs) at percentiles."""

    label: str
    repetition: int
    merged: bool
    percentiles: list[float]
    latency_usec: list[int]
    total_count: int = 0
    at_levels: dict[float, int] = field(default_factory=dict)
    """The value at each of ``KEY_LEVELS`` the count reaches (1/(1-p) <= count), and at 100."""


@dataclass(frozen=True)
class Spectrum:
    """The spectrum of one command (``"all commands"``: every command merged)."""

    command: str
    curves: list[Curve]


@dataclass(frozen=True)
class Series:
    """One client's throughput and p99 per interval of a repetition (p99 None: an interval
    without a reply, a stall: a gap in the plot, never a fast 0)."""

    host: str
    seconds: list[float]
    ops_per_sec: list[float]
    p99_usec: list[int | None]
    max_usec: list[int | None] = field(default_factory=list)
    """The largest latency per interval (None: no reply, or a document older than it)."""
    gap_usec: list[int | None] = field(default_factory=list)
    """The longest a connection waited for a reply per interval: a stall shows here even
    when no reply came (None: a document older than the field)."""


@dataclass(frozen=True)
class Timeline:
    """A repetition over time: every client's series, the warm-up and the common window."""

    repetition: int
    interval_s: float
    series: list[Series]
    warmup_until_s: float | None
    window_s: tuple[float, float] | None


@dataclass(frozen=True)
class CpuLine:
    """One host's CPU per interval of a repetition (seconds from T0 at the interval's end):
    the host's busy share of all cores, its hottest load process and its server processes (%
    of one core), per target when it runs several, as the server-bound verdicts judge them.
    None: not read in that interval."""

    host: str
    roles: list[str]
    seconds: list[float]
    busy_percent: list[float | None]
    hottest_load_percent: list[float | None]
    hottest_load_names: list[str]
    server_percent: dict[str, list[float | None]]
    """Target name (``""`` for a host running one, or when its processes' ports were not
    recorded) -> its processes' CPU."""
    missing: str | None
    """Why the host was not sampled at all (then no interval)."""


@dataclass(frozen=True)
class HostCpu:
    """Every host's CPU over one repetition."""

    repetition: int
    lines: list[CpuLine]


@dataclass(frozen=True)
class BaselineRow:
    """One netperf pair (before or after the benchmark): its medians across iterations, µs."""

    when: str
    pair: str
    p50_usec: float | None
    p90_usec: float | None
    p99_usec: float | None
    mean_usec: float | None
    transactions_per_sec: float | None
    p50_spread_usec: float
    stream_mbps: float | None
    note: str


@dataclass(frozen=True)
class BaselineSection:
    """The netperf baselines with the benchmark's p50 beside them (skipped: the run was told
    not to measure them)."""

    skipped: bool
    rows: list[BaselineRow]
    benchmark_p50_usec: float | None
    beside: list[str]
    drift: list[str]


@dataclass(frozen=True)
class FactsTable:
    """The platform as a table: a column per host (or target server), a row per fact."""

    title: str
    columns: dict[str, dict[str, str]]


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows, in the order it shows it."""

    title: str
    status: str
    coord_version: str
    created: str
    finished: str | None
    command_line: JsonValue | None
    verdicts: list[VerdictLine]
    warnings: list[Warning]
    failure: str | None
    rows: list[SummaryRow]
    spectra: list[Spectrum]
    timelines: list[Timeline]
    host_cpu: list[HostCpu] | None
    baselines: BaselineSection | None
    platform: list[FactsTable] | None
    agents: list[JsonValue]
    inventory: dict[str, JsonValue]
    shards: list[ShardRow] = field(default_factory=list)  # a Redis Cluster's, per primary
    targets: list[TargetRow] = field(default_factory=list)  # several servers': per server
    schedules: list[ScheduleRow] = field(default_factory=list)  # an open loop's, per client


def optional(document: ResultsDocument, names: Sequence[str]) -> JsonValue | None:
    """The first of the fields ``names`` the document holds (as JSON), else None: a tolerant
    read of data only some coord versions record."""
    for name in names:
        value = getattr(document, name, None)
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return [item.model_dump(mode="json") for item in value]
        if value not in (None, [], {}):
            return value  # type: ignore[no-any-return]
    return None


def report_data(document: ResultsDocument) -> ReportData:
    """The report of ``document``."""
    inventory_name = document.inventory.get("name")
    return ReportData(
        title=f"coord run {inventory_name or ''}".strip() + f", {document.created:%Y-%m-%d %H:%M}",
        status=document.status,
        coord_version=document.coord_version,
        created=document.created.isoformat(),
        finished=document.finished.isoformat() if document.finished else None,
        command_line=optional(document, COMMAND_LINE_FIELDS),
        verdicts=verdict_lines(document),
        warnings=warnings(document),
        failure=document.failure.reason if document.failure else None,
        rows=summary_rows(document.repetitions),
        spectra=spectra(document),
        timelines=[timeline(document, r) for r in document.repetitions],
        host_cpu=host_cpu(document),
        baselines=baseline_section(document),
        platform=platform_tables(document),
        agents=[agent.model_dump(mode="json") for agent in document.agents],
        inventory=document.inventory,
        shards=shard_rows(document.repetitions),
        targets=target_rows(document.repetitions),
        schedules=schedule_rows(document.repetitions),
    )


# --------------------------------------------------------------------------------------------
# Verdicts and warnings


def verdict_lines(document: ResultsDocument) -> list[VerdictLine]:
    """The run's verdicts, then each repetition's; flagged first, then undecided, then clear."""
    found = [("run", v) for v in document.verdicts]
    found += [(f"repetition {r.index}", v) for r in document.repetitions for v in r.verdicts]
    lines = [_verdict_line(scope, verdict) for scope, verdict in found]
    return sorted(lines, key=lambda line: STATE_ORDER.get(line.state, 3))


def _verdict_line(scope: str, verdict: Verdict) -> VerdictLine:
    return VerdictLine(scope=scope, name=verdict.name, state=verdict.state,
                       summary=verdict.summary,
                       evidence=[_evidence(e.detail, e.host, e.intervals)
                                 for e in verdict.evidence])


def _evidence(detail: str, host: str | None, intervals: Sequence[int]) -> str:
    where = [f"host {host}"] if host else []
    if intervals:
        where.append("intervals " + ", ".join(str(i) for i in intervals))
    return detail + (f" ({'; '.join(where)})" if where else "")


def warnings(document: ResultsDocument) -> list[Warning]:
    """Every mark on the run and on each repetition, most severe first, with its meaning."""
    order = {"invalid": 0, "warning": 1, "note": 2}
    found = [("run", mark) for mark in document.marks]
    found += [(f"repetition {r.index}", mark) for r in document.repetitions for mark in r.marks]
    if len(document.repetitions) < 3 and "fewer-than-3-repetitions" not in document.marks:
        found.append(("run", "fewer-than-3-repetitions"))
    result = []
    for scope, mark in found:
        kind = MARKS.get(mark)
        result.append(Warning(scope, mark, kind.severity if kind else "warning",
                              kind.meaning if kind else mark))
    return sorted(result, key=lambda w: order.get(w.severity, 1))


# --------------------------------------------------------------------------------------------
# Summary table


def summary_rows(repetitions: Sequence[Repetition]) -> list[SummaryRow]:
    """A row per repetition, then the median with each figure's min-max and CV."""
    rows = [SummaryRow(
        label=f"repetition {r.index}", ops_per_sec=r.ops_per_sec,
        latency_usec={name: float(getattr(r.latency_usec, name)) for name in SUMMARY_LATENCIES},
        errors=float(sum(r.errors.values())), error_rate=r.error_rate,
        start_skew_usec=r.start_skew_usec) for r in repetitions]
    if not rows:
        return rows
    columns: dict[str, list[float]] = {
        "ops_per_sec": [row.ops_per_sec for row in rows],
        **{name: [row.latency_usec[name] for row in rows] for name in SUMMARY_LATENCIES},
        "errors": [row.errors for row in rows],
        "error_rate": [row.error_rate for row in rows],
        "start_skew_usec": [row.start_skew_usec for row in rows],
    }
    median = {name: float(statistics.median(values)) for name, values in columns.items()}
    rows.append(SummaryRow(
        label="median", ops_per_sec=median["ops_per_sec"],
        latency_usec={name: median[name] for name in SUMMARY_LATENCIES},
        errors=median["errors"], error_rate=median["error_rate"],
        start_skew_usec=median["start_skew_usec"],
        spread={name: spread_text(values) for name, values in columns.items()}))
    return rows


def spread_text(values: Sequence[float]) -> str:
    """``min-max (cv x%)`` of ``values``; the CV only with two or more and a non-zero mean."""
    low, high = min(values), max(values)
    text = f"{_short(low)}–{_short(high)}"
    average = statistics.fmean(values)
    if len(values) >= 2 and average:
        text += f" (cv {statistics.stdev(values) / abs(average):.1%})"
    return text


def _short(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


# --------------------------------------------------------------------------------------------
# Latency spectrum


def spectrum_levels(total_count: int) -> list[float]:
    """Percentile levels of a spectrum, HdrHistogram-style: 1/(1-p) doubling every
    ``SPECTRUM_TICKS_PER_HALF`` points, up to where the count (or 10^6) runs out, then 100."""
    limit = min(max(float(total_count), 1.0), SPECTRUM_MAX_FACTOR)
    levels, step = [], 0
    while (factor := 2 ** (step / SPECTRUM_TICKS_PER_HALF)) <= limit:
        levels.append(100.0 * (1.0 - 1.0 / factor))
        step += 1
    return levels


def curve(label: str, repetition: int, merged: bool, histogram: HdrHistogram) -> Curve:
    """The spectrum line of one histogram (empty for an empty histogram)."""
    total = int(histogram.total_count)
    if not total:
        return Curve(label, repetition, merged, [], [])
    levels = spectrum_levels(total)
    reached = [level for level in KEY_LEVELS if 1.0 / (1.0 - level / 100.0) <= total + 1e-6]
    values = percentiles(histogram, [*levels, *reached, 100.0])
    return Curve(label, repetition, merged, levels, [values[level] for level in levels],
                 total, {level: values[level] for level in [*reached, 100.0]})


def spectra(document: ResultsDocument) -> list[Spectrum]:
    """Every command merged (each repetition bold, each client thin), then, when there are
    several commands, one spectrum per command (each repetition's merged line)."""
    params = histogram_params(document)
    merged = []
    for r in document.repetitions:
        merged.append(curve(f"rep {r.index}", r.index, True, decode_histogram(r.histogram, params)))
        merged += [curve(f"rep {r.index} {agent.host}", r.index, False,
                         decode_histogram(agent.histogram, params)) for agent in r.agents]
    result = [Spectrum("all commands", merged)]
    commands = sorted({name for r in document.repetitions for name in r.commands})
    if len(commands) > 1:
        result += [Spectrum(name, [
            curve(f"rep {r.index}", r.index, True,
                  decode_histogram(r.commands[name].histogram, params))
            for r in document.repetitions if name in r.commands]) for name in commands]
    return result


# --------------------------------------------------------------------------------------------
# Over time


def timeline(document: ResultsDocument, repetition: Repetition) -> Timeline:
    """Each client's throughput and p99 per interval (seconds from T0, at the interval's end)."""
    interval_s = interval_seconds(document)
    series = []
    warmup_end: float | None = None
    for agent in repetition.agents:
        intervals = sorted(agent.intervals, key=lambda i: i.index)
        series.append(Series(agent.host, [(i.index + 1) * interval_s for i in intervals],
                             [i.ops_per_sec for i in intervals], [i.p99_usec for i in intervals],
                             [i.max_usec for i in intervals], [i.gap_usec for i in intervals]))
        warm = [(i.index + 1) * interval_s for i in intervals if i.phase == "warmup"]
        if warm:
            warmup_end = max(warmup_end or 0.0, *warm)
    window = repetition.window
    window_s = None
    if window.first is not None and window.last is not None:
        window_s = (window.first * interval_s, (window.last + 1) * interval_s)
    return Timeline(repetition.index, interval_s, series, warmup_end, window_s)


# --------------------------------------------------------------------------------------------
# Host CPU, network baselines, platform


def host_cpu(document: ResultsDocument) -> list[HostCpu] | None:
    """Per repetition that recorded system metrics, every host's CPU; None when none did."""
    targets = recorded_targets(document)
    found = [HostCpu(r.index, [cpu_line(host, targets.get(host.host, {})) for host in r.metrics])
             for r in document.repetitions if r.metrics]
    return found or None


def recorded_targets(document: ResultsDocument) -> dict[str, dict[int, str]]:
    """host -> its servers' ports -> their names, read from the inventory the run recorded (a
    run's own inventory: :func:`coordinator.run.metrics_plan.servers_by_host`); a server entry
    that does not read as one is left out."""
    servers = document.inventory.get("servers")
    found: dict[str, dict[int, str]] = {}
    for server in servers if isinstance(servers, list) else ():
        if not isinstance(server, dict):
            continue
        host, port, name = server.get("host"), server.get("port"), server.get("name")
        if isinstance(host, str) and isinstance(port, int) and isinstance(name, str):
            found.setdefault(host, {})[port] = name
    return found


def cpu_line(metrics: HostMetrics, targets: Mapping[int, str]) -> CpuLine:
    """A host's CPU per interval (before T0 included: the load's ramp shows). ``targets``:
    its servers' ports -> names."""
    intervals = metrics.intervals
    hottest = [i.hottest_load_process() for i in intervals]
    servers = server_series(metrics, intervals, intervals, targets)
    return CpuLine(
        host=metrics.host, roles=list(metrics.roles),
        seconds=[round((i.start_ms + i.duration_ms) / 1000.0, 3) for i in intervals],
        busy_percent=[i.cpu.busy if i.cpu else None for i in intervals],
        hottest_load_percent=[p.cpu_percent if p else None for p in hottest],
        hottest_load_names=list(dict.fromkeys(p.name for p in hottest if p)),
        server_percent={series.target or "": list(series.process_cpu) for series in servers
                        if any(cpu is not None for cpu in series.process_cpu)},
        missing=metrics.missing.get("all"))


def _baseline_row(when: str, pair: BaselinePair) -> BaselineRow:
    median = pair.median
    notes = [note for note in (pair.error, "inconsistent" if pair.inconsistent else None) if note]
    return BaselineRow(
        when=when, pair=pair.label, p50_usec=median.p50_usec if median else None,
        p90_usec=median.p90_usec if median else None,
        p99_usec=median.p99_usec if median else None,
        mean_usec=median.mean_usec if median else None,
        transactions_per_sec=median.transactions_per_sec if median else None,
        p50_spread_usec=pair.p50_spread_usec, stream_mbps=pair.stream_mbps,
        note="; ".join(notes))


def baseline_section(document: ResultsDocument) -> BaselineSection | None:
    """The baselines and the benchmark's p50 beside them; None when the run recorded none."""
    baselines = document.baselines
    if baselines is None:
        return None
    rows = [_baseline_row("before", pair) for pair in baselines.before]
    rows += [_baseline_row("after", pair) for pair in baselines.after]
    summary = document.summary
    return BaselineSection(
        skipped=baselines.skipped, rows=rows,
        benchmark_p50_usec=summary.latency_usec.p50.median if summary else None,
        beside=beside_baseline_lines(document), drift=list(baselines.drift))


def platform_tables(document: ResultsDocument) -> list[FactsTable] | None:
    """The hosts' description, then the target servers'; None when the run recorded none."""
    platform = document.platform
    if platform is None:
        return None
    tables = [FactsTable("hosts", {r.host: host_facts(r) for r in platform.hosts})]
    if platform.servers:
        tables.append(FactsTable("target servers",
                                 {r.server: server_facts(r) for r in platform.servers}))
    return tables
