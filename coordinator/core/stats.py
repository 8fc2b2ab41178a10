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

Decoding the reports is ``coordinator.core.reports``; histograms are
``coordinator.core.histograms``.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

from agent.histograms import HistogramParams
from coordinator.core.clock import ClockEstimate, to_coordinator_time
from coordinator.core.histograms import (
    HISTOGRAM_PARAMS,
    add_into,
    encode_histogram,
    mean,
    merge,
    percentiles,
)
from coordinator.core.reports import AgentReport, Phase

PERCENTILES: Mapping[str, float] = {
    "p50": 50.0,
    "p90": 90.0,
    "p95": 95.0,
    "p99": 99.0,
    "p999": 99.9,
}
"""The percentiles reported for every merged histogram: figure name -> percentile level."""


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
