"""Agents' load reports: decoded, validated, histograms checked. Pure: no I/O.

``parse_agent_report(text, host, params)`` turns one agent's JSON load report into an
``AgentReport``, or refuses it with one line naming the host.

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

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from hdrh.histogram import HdrHistogram
from pydantic import ValidationError

from agent.drivers.intervals import REPORT_FORMAT, IntervalData, LoadReport, OpenLoopData
from agent.histograms import CommandLatencies, HistogramParams
from agent.messages import MessageError, decode, parse_json
from coordinator.core.errors import AgentError
from coordinator.core.histograms import (
    HISTOGRAM_PARAMS,
    HistogramError,
    decode_histogram,
    encode_histogram,
)

Phase = Literal["warmup", "measure"]




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
    gap_usec: int = 0  # the longest wait for a reply on one connection (IntervalData's)
    open_loop: OpenLoopData | None = None  # the open loop's schedule (IntervalData's)
    redirects: Mapping[str, int] = field(default_factory=dict)  # a cluster's MOVED/ASK followed
    shards: Mapping[str, CommandSample] = field(default_factory=dict)  # a cluster's, by primary

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
    first_request_spread_ns: int = 0  # its connections' latest first request - started_ns
    window_ns: int | None = None  # a one-window driver's measured run from started_ns
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
        commands = _samples(interval.commands, f"intervals.{position}.commands", expected,
                            refuse)
        shards = _samples(interval.shards, f"intervals.{position}.shards", expected, refuse)
        intervals.append(_interval(interval, commands, shards))
    try:
        return AgentReport(
            host=host,
            driver=report.driver,
            t0_ns=report.t0_ns,
            started_ns=report.started_ns,
            start_spread_ns=report.start_spread_ns,
            first_request_spread_ns=report.first_request_spread_ns,
            window_ns=report.window_ns,
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


def _samples(latencies: Mapping[str, CommandLatencies], where: str, expected: HistogramParams,
             refuse: Callable[[str], AgentError]) -> dict[str, CommandSample]:
    """Histograms by name (commands, or a cluster's primaries), each checked: decodable with
    coord's settings, and holding no more values than its count."""
    checked: dict[str, CommandSample] = {}
    for name, command in latencies.items():
        try:
            histogram = decode_histogram(command.histogram, expected)
        except HistogramError as exc:
            raise refuse(f"{where}.{name}.histogram: {exc}") from exc
        recorded = int(histogram.total_count)
        if command.count < recorded:
            raise refuse(f"{where}.{name}.count: {command.count} is below the {recorded} values "
                         f"in its histogram")
        checked[name] = CommandSample(command.count, command.histogram, recorded, expected)
    return checked


def _interval(interval: IntervalData, commands: dict[str, CommandSample],
              shards: dict[str, CommandSample]) -> Interval:
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
        gap_usec=interval.gap_usec,
        open_loop=interval.open_loop,
        redirects=dict(interval.redirects),
        shards=shards,
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
