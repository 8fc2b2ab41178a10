"""Latency statistics of a run: agents' load reports in, result records out. Pure: no I/O.

The pipeline, one repetition at a time::

    parse_agent_report(text, host, params)   one per agent: typed, every histogram checked
    common_window(reports)                    interval indices every agent measured completely
    repetition_figures(reports, window, ...)  merged over agents and commands: a Repetition
    targets_figures(reports, window, targets, ...)  the same, per server of a multi-server run
    aggregate([repetition, ...])              across repetitions: median, min, max, CV

The figures are produced directly as the records ``results.json`` stores
(``coordinator.core.figures``): nothing is computed into one class and copied into another.

Rules this module keeps (design §5, issue 4):

- **Histograms, never percentiles, are combined.** Merging is adding HdrHistograms; every
  percentile here is read from one merged histogram. Nothing averages percentiles.
- **One histogram shape for everyone.** The coordinator fixes units (µs), range and precision
  (``HISTOGRAM_PARAMS``); a report or histogram with other ones is refused on receipt, naming
  the host, rather than merged approximately.
- **The window is the intersection**: only the intervals in which every agent was in its
  measure phase with a complete interval count; warm-up, partial and missing intervals of any
  one agent take that interval out for all.
- **A one-window driver's rate is each agent's count over its own run.** An external tool
  (redis-benchmark, memtier) reports its whole measured run as the one measure interval, and
  its run need not last ``benchmark.duration`` (``requests`` given). Each agent reports its
  run's length (``window_ns``: the tool's own elapsed time); the agent's ops/s is its count
  over that, and the merged ops/s (repetition, per command) is the **sum of each agent's
  count / its own run**: the load the clients offered together while their runs overlapped,
  which is what the runs are started together for. Dividing the summed count by the union
  span of the runs (:func:`run_span_ns`, stored as ``window.seconds``) would read a client
  that finished early as a slower whole; it is kept beside as the evidence of how far the
  runs overlapped.

Decoding the reports is ``coordinator.core.reports``; histograms are
``coordinator.core.histograms``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final

from hdrh.histogram import HdrHistogram

from agent.drivers.intervals import OpenLoopData
from agent.histograms import HistogramParams, percentiles
from coordinator.core.clock import ClockEstimate, to_coordinator_time
from coordinator.core.figures import (
    AgentRepetition,
    CommandRecord,
    IntervalRecord,
    Latency,
    Repetition,
    SummaryRecord,
    TargetFigures,
    Window,
    hgrm_name,
)
from coordinator.core.histograms import (
    HISTOGRAM_PARAMS,
    add_into,
    encode_histogram,
    merge,
)
from coordinator.core.reports import AgentReport, Interval


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

    A load process starts when its first request is sent (the agent reads its clock as the
    ``send`` returns). Each agent's start runs from ``started_ns`` (its earliest process) to
    ``started_ns + start_spread_ns`` (its latest) in its clock, moved to the coordinator's with
    its offset estimate; the skew is the latest end minus the earliest start. Within
    :func:`start_skew_uncertainty_ns` of the truth. ``ValueError`` for a host without clock.
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


def start_skew_uncertainty_ns(reports: Sequence[AgentReport],
                              clocks: Mapping[str, ClockEstimate]) -> int:
    """How far :func:`start_skew_ns` may be from the true skew, ns: the sum of the two largest
    offset uncertainties among the agents (0 for one agent: its skew is read on one clock).

    The skew is a difference of two instants, each moved by its own agent's offset estimate,
    and each estimate is within its uncertainty of the truth, independently: so the
    difference is within the sum of the two, never more (the largest alone is no bound).
    ``ValueError`` for a host without clock.
    """
    missing = [report.host for report in reports if report.host not in clocks]
    if missing:
        raise ValueError(f"no clock estimate for {missing[0]}")
    if len({report.host for report in reports}) < 2:
        return 0
    largest = sorted((clocks[report.host].uncertainty_ns for report in reports), reverse=True)
    return largest[0] + largest[1]


def run_span_ns(reports: Sequence[AgentReport],
                clocks: Mapping[str, ClockEstimate]) -> int | None:
    """The union span of one-window drivers' measured runs, in the coordinator's clock, ns:
    the latest end minus the earliest start (each ``started_ns`` + ``window_ns`` moved by its
    agent's offset). None for interval drivers (no report has ``window_ns``); ``ValueError``
    if some reports have one and others not, or for a host without clock."""
    runs = [report for report in reports if report.window_ns is not None]
    if not runs:
        return None
    if len(runs) != len(reports):
        raise ValueError("some agents report their own run and some not (different drivers?)")
    starts, ends = [], []
    for report in runs:
        if report.host not in clocks:
            raise ValueError(f"no clock estimate for {report.host}")
        start = to_coordinator_time(report.started_ns, clocks[report.host])
        starts.append(start)
        ends.append(start + (report.window_ns or 0))
    return max(ends) - min(starts)


def first_request_spread_ns(reports: Sequence[AgentReport]) -> int:
    """The largest, over agents, of the time between its first and its last connection's
    first request, ns (read on the agent's one clock: no offset involved)."""
    return max((report.first_request_spread_ns for report in reports), default=0)


def error_rate(errors: int, requests: int) -> float:
    """``errors / requests``, at most 1; 1 when errors happened and no request finished."""
    if requests <= 0:
        return 1.0 if errors > 0 else 0.0
    return min(1.0, errors / requests)


def _usec(ns: int | None) -> float | None:
    return ns / 1000 if ns is not None else None


@dataclass
class _Merging:
    """The histograms and counts of one repetition as they are added up (decoded once)."""

    params: HistogramParams
    in_window: set[int]
    interval_s: float
    seconds: float
    commands: defaultdict[str, HdrHistogram] = field(init=False)
    command_counts: Counter[str] = field(default_factory=Counter)
    shards: defaultdict[str, HdrHistogram] = field(init=False)  # a cluster's, by primary
    shard_counts: Counter[str] = field(default_factory=Counter)
    redirects: Counter[str] = field(default_factory=Counter)
    agent_histograms: list[HdrHistogram] = field(default_factory=list)
    command_rates: dict[str, float] = field(default_factory=dict)  # one-window: summed
    ops_per_sec: float = 0.0  # summed over agents (what a one-window driver reports)
    one_window: bool = False  # some agent divided by its own run

    def __post_init__(self) -> None:
        self.commands = defaultdict(self.params.empty)
        self.shards = defaultdict(self.params.empty)

    def agent(self, report: AgentReport) -> AgentRepetition:
        """One agent over the window, its whole interval series, its histogram kept.

        A one-window driver's agent (``window_ns`` set) divides by its own run: its rate, its
        measured interval's, and its part of each command's rate."""
        own_s = report.window_ns / 1e9 if report.window_ns is not None else None
        histogram = self.params.empty()
        series = [self.interval(interval, histogram, own_s) for interval in report.intervals]
        self.agent_histograms.append(histogram)
        measured = [record for record in series if record.in_window]
        errors = _sum_counters(record.errors for record in measured)
        count = sum(record.count for record in measured)
        requests = sum(record.requests for record in measured)
        ops_per_sec = _rate(count, self.seconds if own_s is None else own_s)
        self.one_window = self.one_window or own_s is not None
        self.ops_per_sec += ops_per_sec
        return AgentRepetition(
            host=report.host,
            count=count,
            requests=requests,
            errors=errors,
            error_rate=error_rate(sum(errors.values()), requests),
            overflow=sum(record.overflow for record in measured),
            ops_per_sec=ops_per_sec,
            window_seconds=own_s,
            latency_usec=Latency.of(histogram),
            histogram=encode_histogram(histogram),
            intervals=series,
            gap_usec=max((record.gap_usec or 0 for record in measured), default=None),
            **open_loop_figures(measured, self.seconds),
        )

    def interval(self, interval: Interval, agent_histogram: HdrHistogram,
                 own_s: float | None) -> IntervalRecord:
        """One interval's record; its counts go into the agent's and commands' if measured
        (a measured one of a one-window driver's agent: divided by ``own_s``, its run)."""
        decoded = {name: c.histogram() for name, c in interval.commands.items()}
        if len(decoded) == 1:  # the common case: no need to copy or re-encode
            histogram = next(iter(decoded.values()))
            encoded = next(iter(interval.commands.values())).encoded
        else:
            histogram = merge(decoded.values(), self.params)
            encoded = encode_histogram(histogram)
        measured = interval.index in self.in_window
        seconds = own_s if measured and own_s is not None else self.interval_s
        loop = interval.open_loop  # the open loop's accounting (None: a closed loop)
        if measured:
            add_into(agent_histogram, histogram)
            for name, command in interval.commands.items():
                add_into(self.commands[name], decoded[name])
                self.command_counts[name] += command.count
                if own_s is not None:
                    self.command_rates[name] = (self.command_rates.get(name, 0.0)
                                                + _rate(command.count, own_s))
            for name, shard in interval.shards.items():
                add_into(self.shards[name], shard.histogram())
                self.shard_counts[name] += shard.count
            self.redirects.update(interval.redirects)
        return IntervalRecord(
            index=interval.index,
            phase=interval.phase,
            complete=interval.complete,
            in_window=measured,
            count=interval.count,
            requests=interval.requests,
            errors=dict(interval.errors),
            overflow=interval.overflow,
            ops_per_sec=interval.count / seconds,
            histogram=encoded,
            **stall_figures(histogram),
            gap_usec=interval.gap_usec,
            **open_loop_record(loop),
            redirects=dict(interval.redirects) if interval.redirects else None,
        )

    def rate(self, count: int) -> float:
        """The agents' merged rate of ``count`` replies: the sum of their own for a one-window
        driver, else over the window's seconds."""
        return self.ops_per_sec if self.one_window else _rate(count, self.seconds)

    def shard(self, name: str) -> CommandRecord:
        """One primary of a cluster: the replies it gave, merged over every agent."""
        count = self.shard_counts[name]
        return CommandRecord(count=count, ops_per_sec=_rate(count, self.seconds),
                             latency_usec=Latency.of(self.shards[name]),
                             histogram=encode_histogram(self.shards[name]))

    def cluster_figures(self) -> dict[str, Any]:
        """A cluster's per-primary figures and the redirections followed (empty otherwise)."""
        return {"shards": {name: self.shard(name) for name in sorted(self.shards)},
                "redirects": _sum_counters([self.redirects])}

    def command(self, name: str) -> CommandRecord:
        """One command type merged over every agent in the window."""
        count = self.command_counts[name]
        return CommandRecord(
            count=count,
            ops_per_sec=self.command_rates.get(name, _rate(count, self.seconds)),
            latency_usec=Latency.of(self.commands[name]),
            histogram=encode_histogram(self.commands[name]),
        )


OPEN_LOOP_RECORDED: Final = ("sent", "late", "lateness_max_usec", "not_sent", "behind_schedule",
                              "late_waiting", "not_sent_waiting", "loop_behind")
"""An interval's open-loop figures (:class:`OpenLoopData`'s) its record carries by name."""


def open_loop_record(loop: OpenLoopData | None) -> dict[str, Any]:
    """An interval record's open-loop fields: ``loop``'s figures, or all null in a closed
    loop."""
    return {name: getattr(loop, name) if loop is not None else None
            for name in OPEN_LOOP_RECORDED}


def open_loop_figures(measured: Sequence[IntervalRecord], seconds: float) -> dict[str, Any]:
    """An agent's achieved rate and whether it kept its schedule over the window."""
    loops = [record for record in measured if record.sent is not None]
    if not loops:
        return {}
    return {"sent_per_sec": _rate(sum(record.sent or 0 for record in loops), seconds),
            "behind_schedule": any(record.behind_schedule for record in loops)}


def stall_figures(histogram: HdrHistogram) -> dict[str, Any]:
    """An interval's tail: p99, p99.9 and max, µs; all None (not 0) when it has no reply, so
    that an interval a stall emptied does not read as a fast one."""
    if not histogram.get_total_count():
        return {"p99_usec": None, "p999_usec": None, "max_usec": None}
    values = percentiles(histogram, [99.0, 99.9])
    return {"p99_usec": values[99.0], "p999_usec": values[99.9],
            "max_usec": int(histogram.get_max_value())}


def repetition_figures(
    reports: Sequence[AgentReport],
    window: Sequence[int],
    params: HistogramParams = HISTOGRAM_PARAMS,
    *,
    index: int = 1,
    started: datetime | None = None,
    start_skew_ns: int = 0,
    start_skew_uncertainty_ns: int | None = None,
    first_request_spread_ns: int | None = None,
    run_span_ns: int | None = None,
) -> Repetition:
    """Repetition ``index``: every agent's and command's histograms merged over ``window``.

    ``window`` is normally ``common_window(reports)``; each of its intervals must be usable
    (measure phase, complete) in every report (``ValueError`` otherwise). An empty window
    gives zero counts and rates: the caller decides what such a repetition is worth (marks,
    added with ``Repetition.with_marks``). Throughputs are counts divided by the window's
    length; latency figures come only from merged histograms. Each command histogram is
    decoded once and dropped after use. ``started`` is T0 (default: the Unix epoch). A
    one-window driver's reports divide by their own runs; ``run_span_ns``: the window's seconds.
    """
    in_window = set(window)
    window = sorted(in_window)
    interval_s = (_interval_ns(reports) if reports else 1_000_000_000) / 1e9
    _check_usable(reports, window)
    merging = _Merging(params, in_window, interval_s, len(window) * interval_s)
    agents = [merging.agent(report) for report in reports]
    windowed = [
        interval
        for report in reports
        for interval in (report.interval(i) for i in window)
        if interval is not None
    ]
    errors = _sum_counters(agent.errors for agent in agents)
    count = sum(agent.count for agent in agents)
    requests = sum(agent.requests for agent in agents)
    histogram = merge(merging.agent_histograms, params)
    return Repetition(
        index=index,
        started=(started or datetime.fromtimestamp(0, timezone.utc)).astimezone(timezone.utc),
        start_skew_usec=start_skew_ns / 1000,
        start_skew_uncertainty_usec=_usec(start_skew_uncertainty_ns),
        first_request_spread_usec=_usec(first_request_spread_ns),
        window=_window(window, interval_s, run_span_ns),
        count=count,
        requests=requests,
        ops_per_sec=merging.rate(count),
        latency_usec=Latency.of(histogram),
        errors=errors,
        error_rate=error_rate(sum(errors.values()), requests),
        overflow=sum(agent.overflow for agent in agents),
        bytes_sent=sum(i.bytes_sent for i in windowed),
        bytes_received=sum(i.bytes_received for i in windowed),
        marks=[],
        histogram=encode_histogram(histogram),
        hgrm=hgrm_name(index),
        commands={name: merging.command(name) for name in sorted(merging.commands)},
        agents=agents, **merging.cluster_figures(),
    )


@dataclass(frozen=True)
class LoadedServer:
    """One server of a run loading several (``benchmark.targets``): its name, the driver
    loading it and its clients' host names."""

    name: str
    driver: str
    clients: Sequence[str]


def targets_figures(reports: Sequence[AgentReport], window: Sequence[int],
                    targets: Sequence[LoadedServer], params: HistogramParams = HISTOGRAM_PARAMS,
                    **repetition: Any) -> Repetition:
    """A repetition of a run loading several servers: each target's figures merged over its
    own clients only (latencies of different servers never share a histogram), over the
    ``window`` every client measured. The repetition's own figures are the first target's
    (``targets[0]``, the one the results' target record names), with every client in
    ``agents`` (each judged as before); ``targets`` holds every target's, the first included.
    ``repetition``: :func:`repetition_figures`' keyword arguments (index, start skew, ...).
    ``ValueError`` for a report of a host in no target, or a target without report."""
    loaded = {client for target in targets for client in target.clients}
    strays = sorted(report.host for report in reports if report.host not in loaded)
    if strays:
        raise ValueError(f"{', '.join(strays)}: load report of a client in no target")
    merged: dict[str, Repetition] = {}
    for target in targets:
        own = [report for report in reports if report.host in target.clients]
        if not own:
            raise ValueError(f"target {target.name}: no client reported")
        merged[target.name] = repetition_figures(own, window, params, **repetition)
    agents = {agent.host: agent for figures in merged.values() for agent in figures.agents}
    first = merged[targets[0].name]
    return first.model_copy(update={
        "agents": [agents[report.host] for report in reports],
        "targets": {target.name: TargetFigures(
            driver=target.driver, clients=list(target.clients),
            **{name: getattr(merged[target.name], name)
               for name in ("count", "requests", "ops_per_sec", "latency_usec", "errors",
                            "error_rate", "overflow", "histogram", "commands")})
            for target in targets},
    })


def aggregate(repetitions: Sequence[Repetition]) -> SummaryRecord:
    """Median, min, max and CV of each figure over ``repetitions`` (``ValueError`` if none)."""
    return SummaryRecord.of(repetitions)


def _check_usable(reports: Sequence[AgentReport], window: Sequence[int]) -> None:
    for report in reports:
        for index in window:
            interval = report.interval(index)
            if interval is None or not interval.usable:
                raise ValueError(
                    f"{report.host}: interval {index} is not a complete measure interval"
                )


def _interval_ns(reports: Sequence[AgentReport]) -> int:
    lengths = {report.interval_ns for report in reports}
    if len(lengths) > 1:
        described = ", ".join(f"{r.host}={r.interval_ns} ns" for r in reports)
        raise ValueError(f"agents used different interval lengths: {described}")
    return lengths.pop()


def _window(indices: Sequence[int], interval_s: float, run_span_ns: int | None) -> Window:
    window = Window.of(indices, interval_s)
    if run_span_ns is None or not indices:
        return window
    return window.model_copy(update={"seconds": run_span_ns / 1e9})


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _sum_counters(counters: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for counter in counters:
        total.update(counter)
    return {key: total[key] for key in sorted(total)}
