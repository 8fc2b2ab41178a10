"""Latency statistics of a run: agents' load reports in, merged figures out. Pure: no I/O.

The pipeline, one repetition at a time::

    parse_agent_report(text, host, params)   one per agent: typed, every histogram checked
    common_window(reports)                    interval indices every agent measured completely
    repetition_figures(reports, window)       merged over agents and commands: the figures
    aggregate([figures, ...])                 across repetitions: median, min, max, CV

Rules this module keeps (design §5, issue 4):

- **Histograms, never percentiles, are combined.** Merging is adding HdrHistograms; every
  percentile here is read from one merged histogram. Nothing averages percentiles.
- **One histogram shape for everyone.** The coordinator fixes units (µs), range and precision
  (``HISTOGRAM_PARAMS``); a report or histogram with other ones is refused on receipt, naming
  the host, rather than merged approximately.
- **The window is the intersection**: only the intervals in which every agent was in its
  measure phase with a complete interval count; warm-up, partial and missing intervals of any
  one agent take that interval out for all.

The load report is the agent's schema, :class:`agent.drivers.intervals.LoadReport` (format
1, latencies in µs), read by its strict reader; this module checks its histograms.

Meaning of the counters, as this module reads them (``agent/drivers/intervals.py`` writes
them so): a command's ``count`` is its replies in the interval that were not errors, those
recorded in its histogram plus those whose latency was beyond the histogram's range (so
``count`` >= the histogram's total count; the interval's ``overflow`` counts the latter over
all commands). ``requests`` is every request finished in the interval, error replies
included; ``errors`` counts failures by type (a server error prefix such as ``WRONGTYPE``, or
``connection``). Timestamps (``*_ns``) are the agent's own clock; interval ``index`` counts
``interval_ns`` periods from the common start ``t0_ns``.
"""

from __future__ import annotations

import bisect
import functools
import io
import itertools
import operator
import statistics
import typing
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from hdrh.codec import (
    HdrCookieException,
    HdrHistogramEncoder,
    HdrHistogramSettingsException,
    HdrLengthException,
)
from hdrh.histogram import HdrHistogram
from pydantic import ValidationError

from agent.drivers.intervals import REPORT_FORMAT, IntervalData, LoadReport
from agent.histograms import HistogramParams
from agent.messages import MessageError, decode, parse_json
from coordinator.core.clock import ClockEstimate, to_coordinator_time
from coordinator.core.errors import AgentError

PERCENTILES: Mapping[str, float] = {
    "p50": 50.0,
    "p90": 90.0,
    "p95": 95.0,
    "p99": 99.0,
    "p999": 99.9,
}
"""The percentiles reported for every merged histogram: figure name -> percentile level."""

HGRM_UNIT_RATIO = 1000
"""``.hgrm`` values are milliseconds: µs recorded / 1000 (see ``percentile_distribution``)."""

Phase = Literal["warmup", "measure"]


# --------------------------------------------------------------------------------------------
# Histograms


HISTOGRAM_PARAMS = HistogramParams()
"""What the coordinator asks every agent for: 1 µs .. 60 s, 3 significant figures."""


class HistogramError(ValueError):
    """An encoded histogram cannot be decoded, or has other parameters than expected."""


_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # base64 (binascii.Error), short header, varint stream, bad parameters
    TypeError,
    IndexError,  # counts beyond the array the parameters allow
    RuntimeError,  # empty payload
    ArithmeticError,
    zlib.error,
    HdrCookieException,
    HdrLengthException,
    HdrHistogramSettingsException,
)


def decode_histogram(encoded: str, expected: HistogramParams = HISTOGRAM_PARAMS) -> HdrHistogram:
    """Decode a standard compressed base64 histogram that must have ``expected`` parameters.

    The parameters are read from the payload header and checked before the counts array is
    allocated, so a hostile header cannot make us allocate a huge array.
    """
    try:
        payload = HdrHistogramEncoder.decode(encoded)
    except _DECODE_ERRORS as exc:
        raise HistogramError(f"not a compressed base64 HdrHistogram ({_why(exc)})") from exc
    header = payload.payload
    found = (
        int(header.lowest_trackable_value),
        int(header.highest_trackable_value),
        int(header.significant_figures),
    )
    wanted = (expected.lowest_usec, expected.highest_usec, expected.significant_figures)
    if found != wanted:
        raise HistogramError(
            f"histogram of {found[0]}..{found[1]} µs, {found[2]} significant figures; "
            f"expected {expected.describe()}"
        )
    try:
        return HdrHistogram(*wanted, hdr_payload=payload)
    except _DECODE_ERRORS as exc:
        raise HistogramError(f"corrupt HdrHistogram counts ({_why(exc)})") from exc


def encode_histogram(histogram: HdrHistogram) -> str:
    """The standard compressed base64 form (V2 encoding), as text."""
    encoded: bytes = histogram.encode()
    return encoded.decode("ascii")


def merge(
    histograms: Iterable[HdrHistogram], params: HistogramParams = HISTOGRAM_PARAMS
) -> HdrHistogram:
    """A new histogram holding every count of ``histograms`` (added, never averaged).

    The inputs are left untouched; no input gives an empty histogram with ``params``.
    ``ValueError`` if an input was made with other parameters.
    """
    merged = params.empty()
    for histogram in histograms:
        add_into(merged, histogram)
    return merged


def add_into(target: HdrHistogram, histogram: HdrHistogram) -> None:
    """Add ``histogram``'s counts to ``target`` (same parameters, else ``ValueError``)."""
    theirs, ours = HistogramParams.of(histogram), HistogramParams.of(target)
    if theirs != ours:
        raise ValueError(
            f"cannot merge a histogram of {theirs.describe()} into one of {ours.describe()}"
        )
    lowest = target.min_value
    target.add(histogram)
    # hdrh's add() reads an empty target's minimum as 0; keep the true minimum instead.
    target.min_value = min(lowest, histogram.min_value) if histogram.total_count else lowest


def counts(histogram: HdrHistogram) -> list[int]:
    """The raw counts array (one count per bucket index), for comparisons and tests."""
    return list(_counts_view(histogram))


def _counts_view(histogram: HdrHistogram) -> memoryview:
    """The counts array without copying (hdrh keeps it as a ctypes array of 64-bit words)."""
    return memoryview(histogram.counts).cast("B").cast("Q")[: histogram.counts_len]


@dataclass(frozen=True)
class LatencyFigures:
    """Figures read from one histogram, all in µs. Percentiles and ``max`` are the highest
    value equivalent to the bucket reached (HdrHistogram's convention); all 0 when empty."""

    p50: int
    p90: int
    p95: int
    p99: int
    p999: int
    max: int
    mean: float


def latency_figures(histogram: HdrHistogram) -> LatencyFigures:
    """p50, p90, p95, p99, p99.9, max and mean of one (merged) histogram."""
    values = percentiles(histogram, PERCENTILES.values())
    return LatencyFigures(
        **{name: values[level] for name, level in PERCENTILES.items()},
        max=int(histogram.get_max_value()),
        mean=mean(histogram),
    )


def percentiles(histogram: HdrHistogram, levels: Iterable[float]) -> dict[float, int]:
    """Value (µs) at each percentile level (0..100); 0 for an empty histogram.

    Exactly hdrh's ``get_value_at_percentile`` (the first bucket whose cumulative count
    reaches the level's share of the total, rounded half up; its highest equivalent value, or
    its lowest for level 0), with the cumulative counts computed once, in C.
    """
    wanted = list(levels)
    total = int(histogram.total_count)
    if not total:
        return dict.fromkeys(wanted, 0)
    cumulative = list(itertools.accumulate(_counts_view(histogram)))
    found = {}
    for level in wanted:
        target = max(int(min(level, 100.0) * total / 100 + 0.5), 1)
        index = bisect.bisect_left(cumulative, target)
        if index >= len(cumulative):
            found[level] = 0
            continue
        value = histogram.get_value_from_index(index)
        if level:
            found[level] = int(histogram.get_highest_equivalent_value(value))
        else:
            found[level] = int(histogram.get_lowest_equivalent_value(value))
    return found


def mean(histogram: HdrHistogram) -> float:
    """HdrHistogram's mean (each bucket counted at its middle value), computed at C speed."""
    total = int(histogram.total_count)
    if not total:
        return 0.0
    middles = _bucket_middles(HistogramParams.of(histogram))
    weighted: int = sum(map(operator.mul, _counts_view(histogram), middles))
    return weighted / total


@functools.lru_cache(maxsize=8)
def _bucket_middles(params: HistogramParams) -> tuple[int, ...]:
    """The value hdrh's ``get_mean_value`` gives each bucket index, for these parameters."""
    histogram = params.empty()
    middles = []
    for index in range(histogram.counts_len):
        value = histogram.get_value_from_index(index)
        lowest = int(histogram.get_lowest_equivalent_value(value))
        highest = int(histogram.get_highest_equivalent_value(value))
        middles.append(lowest + ((highest - lowest + 1) >> 1))
    return tuple(middles)


def percentile_distribution(histogram: HdrHistogram) -> str:
    """The standard ``.hgrm`` text of ``histogram``, values in **milliseconds**.

    The table is HdrHistogram's ``outputPercentileDistribution`` (header ``Value Percentile
    TotalCount 1/(1-Percentile)``, 5 ticks per half distance) with µs divided by 1000 and
    printed with 3 decimals, so no µs is lost; milliseconds are what HdrHistogram's plotter
    and wrk2/memtier ``.hgrm`` files use. The footer gives mean, standard deviation and max in
    ms (hdrh prints the standard deviation unscaled; it is scaled here) and the total count.
    """
    out = io.BytesIO()
    histogram.output_percentile_distribution(out, HGRM_UNIT_RATIO)
    lines = out.getvalue().decode("ascii").splitlines()
    digits = int(histogram.significant_figures)
    stddev = float(histogram.get_stddev()) / HGRM_UNIT_RATIO if histogram.total_count else 0.0
    footer = (
        f"#[Mean    = {mean(histogram) / HGRM_UNIT_RATIO:12.{digits}f}, "
        f"StdDeviation   = {stddev:12.{digits}f}]"
    )
    lines = [footer if line.startswith("#[Mean") else line for line in lines]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Agent load reports


@dataclass(frozen=True)
class CommandSample:
    """One command type in one interval of one agent.

    The histogram is kept encoded (a decoded one holds a ~140 KB counts array at the default
    parameters; a run has thousands) and decoded again, already checked, when merged.
    """

    count: int
    """Non-error replies counted: ``recorded`` plus those beyond the histogram's range."""
    encoded: str
    recorded: int
    """Values in the histogram."""
    params: HistogramParams = HISTOGRAM_PARAMS

    @classmethod
    def of(cls, histogram: HdrHistogram, count: int | None = None) -> CommandSample:
        """A sample holding ``histogram`` (``count`` defaults to its number of values)."""
        recorded = int(histogram.total_count)
        return cls(
            count=recorded if count is None else count,
            encoded=encode_histogram(histogram),
            recorded=recorded,
            params=HistogramParams.of(histogram),
        )

    def histogram(self) -> HdrHistogram:
        """A freshly decoded copy of the histogram."""
        return decode_histogram(self.encoded, self.params)


@dataclass(frozen=True)
class Interval:
    """One sampling interval of one agent (``index`` counts intervals from T0)."""

    index: int
    phase: Phase
    complete: bool
    commands: Mapping[str, CommandSample]
    requests: int
    errors: Mapping[str, int]
    bytes_sent: int
    bytes_received: int
    overflow: int

    @property
    def count(self) -> int:
        """Non-error replies counted over all commands (histograms plus overflow)."""
        return sum(command.count for command in self.commands.values())

    @property
    def usable(self) -> bool:
        """In the measure phase and complete: may belong to the common window."""
        return self.phase == "measure" and self.complete


@dataclass(frozen=True)
class AgentReport:
    """One agent's load report for one repetition, validated (histograms checked, kept
    encoded: see ``CommandSample``)."""

    host: str
    driver: str
    t0_ns: int
    started_ns: int
    start_spread_ns: int
    stopped_ns: int
    interval_ns: int
    warmup_intervals: int
    measure_intervals: int
    params: HistogramParams
    processes: int
    connections: int
    intervals: tuple[Interval, ...]
    errors: Mapping[str, int]
    _by_index: Mapping[int, Interval] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.interval_ns <= 0:
            raise ValueError(f"interval_ns must be > 0, got {self.interval_ns}")
        by_index: dict[int, Interval] = {}
        for interval in self.intervals:
            if interval.index in by_index:
                raise ValueError(f"interval index {interval.index} appears twice")
            by_index[interval.index] = interval
        object.__setattr__(self, "intervals", tuple(sorted(self.intervals, key=_index)))
        object.__setattr__(self, "_by_index", by_index)

    @property
    def interval_s(self) -> float:
        return self.interval_ns / 1e9

    def interval(self, index: int) -> Interval | None:
        """The interval with this index, or None if the agent did not report it."""
        return self._by_index.get(index)


def _index(interval: Interval) -> int:
    return interval.index


def parse_agent_report(
    text: str | bytes, host: str, expected: HistogramParams = HISTOGRAM_PARAMS
) -> AgentReport:
    """One agent's load report from its JSON text, read by the agent's own schema
    (:meth:`agent.drivers.intervals.LoadReport.from_text`), then checked as :func:`agent_report`.

    ``AgentError(host, ...)`` (one line) for anything wrong: not JSON, another format, a
    missing, unknown or mistyped field, and what :func:`agent_report` refuses.
    """
    try:
        data = parse_json(text)
        if isinstance(data, dict) and data.get("format") != REPORT_FORMAT:
            raise MessageError(
                f"format {data.get('format')!r} is not one this coordinator reads "
                f"({REPORT_FORMAT})"
            )
        report = decode(LoadReport, data)
    except MessageError as exc:
        raise AgentError(host, f"load report refused: {exc}") from exc
    return agent_report(report, host, expected)


def agent_report(
    report: LoadReport, host: str, expected: HistogramParams = HISTOGRAM_PARAMS
) -> AgentReport:
    """Check one agent's load report and decode its histograms.

    ``AgentError(host, ...)`` (one line) for histogram units/range/precision other than
    ``expected`` (declared or found in any encoded histogram), an undecodable histogram, a
    command ``count`` below its histogram's count, an interval index reported twice.
    """

    def refuse(reason: str) -> AgentError:
        return AgentError(host, f"load report refused: {reason}")

    if report.histogram != expected:
        raise refuse(
            f"histograms declared as {report.histogram.describe()}; "
            f"coord fixes {expected.describe()}"
        )
    intervals = []
    for position, interval in enumerate(report.intervals):
        commands: dict[str, CommandSample] = {}
        for name, command in interval.commands.items():
            where = f"intervals.{position}.commands.{name}"
            try:
                histogram = decode_histogram(command.histogram, expected)
            except HistogramError as exc:
                raise refuse(f"{where}.histogram: {exc}") from exc
            recorded = int(histogram.total_count)
            if command.count < recorded:
                raise refuse(
                    f"{where}.count: {command.count} is below the {recorded} values in its "
                    f"histogram"
                )
            commands[name] = CommandSample(command.count, command.histogram, recorded, expected)
        intervals.append(_interval(interval, commands))
    try:
        return AgentReport(
            host=host,
            driver=report.driver,
            t0_ns=report.t0_ns,
            started_ns=report.started_ns,
            start_spread_ns=report.start_spread_ns,
            stopped_ns=report.stopped_ns,
            interval_ns=report.interval_ns,
            warmup_intervals=report.warmup_intervals,
            measure_intervals=report.measure_intervals,
            params=expected,
            processes=report.processes,
            connections=report.connections,
            intervals=tuple(intervals),
            errors=report.errors,
        )
    except ValueError as exc:
        raise refuse(str(exc)) from exc


def _interval(interval: IntervalData, commands: dict[str, CommandSample]) -> Interval:
    return Interval(
        index=interval.index,
        phase=typing.cast(Phase, interval.phase),  # IntervalData checks it is one of PHASES
        complete=interval.complete,
        commands=commands,
        requests=interval.requests,
        errors=dict(interval.errors),
        bytes_sent=interval.bytes_sent,
        bytes_received=interval.bytes_received,
        overflow=interval.overflow,
    )


def first_problem(exc: ValidationError) -> str:
    """pydantic's first error as ``path: message``, so a refusal stays one line."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "(document)"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------------------------
# One repetition


def common_window(reports: Sequence[AgentReport]) -> list[int]:
    """Interval indices in which every agent has a complete interval of its measure phase.

    The intersection over agents, sorted; it may have holes (an interval one agent missed or
    left incomplete is out for all). Empty if there are no reports or nothing in common.
    ``ValueError`` if the agents used different interval lengths.
    """
    if not reports:
        return []
    _interval_ns(reports)
    usable = [{i.index for i in report.intervals if i.usable} for report in reports]
    return sorted(set.intersection(*usable))


def start_skew_ns(reports: Sequence[AgentReport], clocks: Mapping[str, ClockEstimate]) -> int:
    """How far apart the agents started, in the coordinator's clock, ns (0 without reports).

    Each agent's start runs from ``started_ns`` to ``started_ns + start_spread_ns`` (its own
    processes' spread) in its clock, moved to the coordinator's with its offset estimate; the
    skew is the latest end minus the earliest start. ``ValueError`` for a host without clock.
    """
    starts: list[int] = []
    ends: list[int] = []
    for report in reports:
        if report.host not in clocks:
            raise ValueError(f"no clock estimate for {report.host}")
        start = to_coordinator_time(report.started_ns, clocks[report.host])
        starts.append(start)
        ends.append(start + report.start_spread_ns)
    return max(ends) - min(starts) if reports else 0


@dataclass(frozen=True)
class CommandFigures:
    """One command type merged over every agent in the window."""

    name: str
    count: int
    ops_per_sec: float
    latency_usec: LatencyFigures
    histogram: HdrHistogram


@dataclass(frozen=True)
class IntervalFigures:
    """One interval of one agent (every reported interval, in the window or not)."""

    index: int
    phase: Phase
    complete: bool
    in_window: bool
    count: int
    requests: int
    errors: Mapping[str, int]
    overflow: int
    ops_per_sec: float
    p99_usec: int
    histogram: str
    """Merged over the interval's commands, encoded (compressed base64), to save memory."""


@dataclass(frozen=True)
class AgentFigures:
    """One agent over the window, and its whole interval series."""

    host: str
    count: int
    requests: int
    errors: Mapping[str, int]
    error_rate: float
    overflow: int
    ops_per_sec: float
    latency_usec: LatencyFigures
    histogram: HdrHistogram
    intervals: tuple[IntervalFigures, ...]


@dataclass(frozen=True)
class RepetitionFigures:
    """One repetition: everything merged over agents and commands within the window."""

    window: tuple[int, ...]
    interval_s: float
    seconds: float
    """Length of the window: ``len(window) * interval_s``."""
    count: int
    requests: int
    ops_per_sec: float
    latency_usec: LatencyFigures
    errors: Mapping[str, int]
    error_rate: float
    overflow: int
    bytes_sent: int
    bytes_received: int
    histogram: HdrHistogram
    commands: Mapping[str, CommandFigures]
    agents: tuple[AgentFigures, ...]


def error_rate(errors: int, requests: int) -> float:
    """``errors / requests``, at most 1; 1 when errors happened and no request finished."""
    if requests <= 0:
        return 1.0 if errors > 0 else 0.0
    return min(1.0, errors / requests)


def repetition_figures(
    reports: Sequence[AgentReport],
    window: Sequence[int],
    params: HistogramParams = HISTOGRAM_PARAMS,
) -> RepetitionFigures:
    """Merge every agent's and command's histograms and counters over ``window``.

    ``window`` is normally ``common_window(reports)``; each of its intervals must be usable
    (measure phase, complete) in every report (``ValueError`` otherwise). An empty window
    gives zero counts and rates: the caller decides what such a repetition is worth.
    Throughputs are counts divided by the window's length; latency figures come only from
    merged histograms. Each command histogram is decoded once and dropped after use.
    """
    in_window = set(window)
    window = sorted(in_window)
    interval_ns = _interval_ns(reports) if reports else 1_000_000_000
    interval_s = interval_ns / 1e9
    seconds = len(window) * interval_s
    for report in reports:
        for index in window:
            interval = report.interval(index)
            if interval is None or not interval.usable:
                raise ValueError(
                    f"{report.host}: interval {index} is not a complete measure interval"
                )

    command_histograms: defaultdict[str, HdrHistogram] = defaultdict(params.empty)
    command_counts: Counter[str] = Counter()
    agents = []
    for report in reports:
        agent_histogram = params.empty()
        series = []
        for interval in report.intervals:
            decoded = {name: c.histogram() for name, c in interval.commands.items()}
            if len(decoded) == 1:  # the common case: no need to copy or re-encode
                histogram = next(iter(decoded.values()))
                encoded = next(iter(interval.commands.values())).encoded
            else:
                histogram = merge(decoded.values(), params)
                encoded = encode_histogram(histogram)
            measured = interval.index in in_window
            series.append(
                IntervalFigures(
                    index=interval.index,
                    phase=interval.phase,
                    complete=interval.complete,
                    in_window=measured,
                    count=interval.count,
                    requests=interval.requests,
                    errors=dict(interval.errors),
                    overflow=interval.overflow,
                    ops_per_sec=interval.count / interval_s,
                    p99_usec=percentiles(histogram, [99.0])[99.0],
                    histogram=encoded,
                )
            )
            if measured:
                add_into(agent_histogram, histogram)
                for name, command in interval.commands.items():
                    add_into(command_histograms[name], decoded[name])
                    command_counts[name] += command.count
        measured_series = [figures for figures in series if figures.in_window]
        errors = _sum_counters(figures.errors for figures in measured_series)
        count = sum(figures.count for figures in measured_series)
        requests = sum(figures.requests for figures in measured_series)
        agents.append(
            AgentFigures(
                host=report.host,
                count=count,
                requests=requests,
                errors=errors,
                error_rate=error_rate(sum(errors.values()), requests),
                overflow=sum(figures.overflow for figures in measured_series),
                ops_per_sec=_rate(count, seconds),
                latency_usec=latency_figures(agent_histogram),
                histogram=agent_histogram,
                intervals=tuple(series),
            )
        )

    commands = {
        name: CommandFigures(
            name=name,
            count=command_counts[name],
            ops_per_sec=_rate(command_counts[name], seconds),
            latency_usec=latency_figures(command_histograms[name]),
            histogram=command_histograms[name],
        )
        for name in sorted(command_histograms)
    }
    windowed_intervals = [
        interval
        for report in reports
        for interval in (report.interval(index) for index in window)
        if interval is not None
    ]
    errors = _sum_counters(agent.errors for agent in agents)
    count = sum(agent.count for agent in agents)
    requests = sum(agent.requests for agent in agents)
    histogram = merge((agent.histogram for agent in agents), params)
    return RepetitionFigures(
        window=tuple(window),
        interval_s=interval_s,
        seconds=seconds,
        count=count,
        requests=requests,
        ops_per_sec=_rate(count, seconds),
        latency_usec=latency_figures(histogram),
        errors=errors,
        error_rate=error_rate(sum(errors.values()), requests),
        overflow=sum(agent.overflow for agent in agents),
        bytes_sent=sum(i.bytes_sent for i in windowed_intervals),
        bytes_received=sum(i.bytes_received for i in windowed_intervals),
        histogram=histogram,
        commands=commands,
        agents=tuple(agents),
    )


def _interval_ns(reports: Sequence[AgentReport]) -> int:
    lengths = {report.interval_ns for report in reports}
    if len(lengths) > 1:
        described = ", ".join(f"{r.host}={r.interval_ns} ns" for r in reports)
        raise ValueError(f"agents used different interval lengths: {described}")
    return lengths.pop()


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _sum_counters(counters: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for counter in counters:
        total.update(counter)
    return {key: total[key] for key in sorted(total)}


# --------------------------------------------------------------------------------------------
# Across repetitions


@dataclass(frozen=True)
class Spread:
    """One figure across repetitions: median, extremes and coefficient of variation.

    ``cv`` is the sample standard deviation (n - 1) divided by the mean; None with fewer than
    two repetitions or a zero mean.
    """

    median: float
    min: float
    max: float
    cv: float | None


def spread(values: Sequence[float]) -> Spread:
    """The ``Spread`` of one figure's values (``ValueError`` for none)."""
    if not values:
        raise ValueError("no values to summarise")
    average = statistics.fmean(values)
    cv = None
    if len(values) >= 2 and average != 0:
        cv = statistics.stdev(values) / abs(average)
    return Spread(
        median=float(statistics.median(values)),
        min=float(min(values)),
        max=float(max(values)),
        cv=cv,
    )


@dataclass(frozen=True)
class LatencySpread:
    """Each latency figure (µs) across repetitions."""

    p50: Spread
    p90: Spread
    p95: Spread
    p99: Spread
    p999: Spread
    max: Spread
    mean: Spread


@dataclass(frozen=True)
class Summary:
    """A run's figures across its repetitions; medians of per-repetition figures."""

    repetitions: int
    ops_per_sec: Spread
    latency_usec: LatencySpread
    error_rate: Spread


LATENCY_FIGURES = (*PERCENTILES, "max", "mean")
"""Names of the latency figures, in report order."""


def aggregate(repetitions: Sequence[RepetitionFigures]) -> Summary:
    """Median, min, max and CV of each figure over ``repetitions`` (``ValueError`` if none).

    Each repetition's percentile comes from its own merged histogram; the summary is the
    median of those figures (the methodology's "median across repetitions"), with spread.
    """
    if not repetitions:
        raise ValueError("no repetitions to aggregate")
    latency = {
        name: spread([float(getattr(r.latency_usec, name)) for r in repetitions])
        for name in LATENCY_FIGURES
    }
    return Summary(
        repetitions=len(repetitions),
        ops_per_sec=spread([r.ops_per_sec for r in repetitions]),
        latency_usec=LatencySpread(**latency),
        error_rate=spread([r.error_rate for r in repetitions]),
    )
