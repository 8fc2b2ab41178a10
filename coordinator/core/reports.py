"""Agents' load reports: decoded, validated, histograms checked. Pure: no I/O.

``parse_agent_report(text, host, params)`` turns one agent's JSON load report into an
``AgentReport``, or refuses it with one line naming the host.

Load report, format 1 (JSON text written by the agent; latencies in µs)::

    {"format": 1, "driver": str, "t0_ns": int, "started_ns": int, "start_spread_ns": int,
     "stopped_ns": int, "interval_ns": int, "warmup_intervals": int, "measure_intervals": int,
     "histogram": {"lowest_usec": int, "highest_usec": int, "significant_figures": int},
     "processes": int, "connections": int,
     "intervals": [{"index": int, "phase": "warmup" | "measure", "complete": bool,
                    "commands": {NAME: {"histogram": BASE64, "count": int}},
                    "requests": int, "errors": {TYPE: int}, "bytes_sent": int,
                    "bytes_received": int, "overflow": int}],
     "errors": {TYPE: int}}

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

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from hdrh.histogram import HdrHistogram
from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt, ValidationError

from agent.histograms import HistogramParams
from coordinator.core.errors import AgentError
from coordinator.core.histograms import (
    HISTOGRAM_PARAMS,
    HistogramError,
    decode_histogram,
    encode_histogram,
)

REPORT_FORMAT = 1
"""The load report format this coordinator reads."""

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


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _WireParams(_Wire):
    lowest_usec: int
    highest_usec: int
    significant_figures: int


class _WireCommand(_Wire):
    histogram: str
    count: NonNegativeInt


class _WireInterval(_Wire):
    index: NonNegativeInt
    phase: Phase
    complete: bool
    commands: dict[str, _WireCommand]
    requests: NonNegativeInt
    errors: dict[str, NonNegativeInt]
    bytes_sent: NonNegativeInt
    bytes_received: NonNegativeInt
    overflow: NonNegativeInt


class _WireReport(_Wire):
    format: Literal[1]
    driver: str
    t0_ns: int
    started_ns: int
    start_spread_ns: NonNegativeInt
    stopped_ns: int
    interval_ns: PositiveInt
    warmup_intervals: NonNegativeInt
    measure_intervals: NonNegativeInt
    histogram: _WireParams
    processes: PositiveInt
    connections: PositiveInt
    intervals: list[_WireInterval]
    errors: dict[str, NonNegativeInt]


def parse_agent_report(
    text: str | bytes, host: str, expected: HistogramParams = HISTOGRAM_PARAMS
) -> AgentReport:
    """Validate one agent's load report and decode its histograms.

    ``AgentError(host, ...)`` (one line) for anything wrong: not JSON, another format, a
    missing, unknown or mistyped field, histogram units/range/precision other than
    ``expected`` (declared or found in any encoded histogram), an undecodable histogram, a
    command ``count`` below its histogram's count, an interval index reported twice.
    """

    def refuse(reason: str) -> AgentError:
        return AgentError(host, f"load report refused: {reason}")

    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise refuse(f"not JSON ({_why(exc)})") from exc
    if not isinstance(data, dict):
        raise refuse(f"expected a JSON object, got {type(data).__name__}")
    if data.get("format") != REPORT_FORMAT:
        raise refuse(
            f"format {data.get('format')!r} is not one this coordinator reads "
            f"({REPORT_FORMAT})"
        )
    try:
        wire = _WireReport.model_validate(data)
    except ValidationError as exc:
        raise refuse(first_problem(exc)) from exc

    declared = (
        wire.histogram.lowest_usec,
        wire.histogram.highest_usec,
        wire.histogram.significant_figures,
    )
    if declared != (expected.lowest_usec, expected.highest_usec, expected.significant_figures):
        raise refuse(
            f"histograms declared as {declared[0]}..{declared[1]} µs, {declared[2]} "
            f"significant figures; coord fixes {expected.describe()}"
        )

    intervals = []
    for position, interval in enumerate(wire.intervals):
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
        intervals.append(
            Interval(
                index=interval.index,
                phase=interval.phase,
                complete=interval.complete,
                commands=commands,
                requests=interval.requests,
                errors=dict(interval.errors),
                bytes_sent=interval.bytes_sent,
                bytes_received=interval.bytes_received,
                overflow=interval.overflow,
            )
        )
    try:
        return AgentReport(
            host=host,
            driver=wire.driver,
            t0_ns=wire.t0_ns,
            started_ns=wire.started_ns,
            start_spread_ns=wire.start_spread_ns,
            stopped_ns=wire.stopped_ns,
            interval_ns=wire.interval_ns,
            warmup_intervals=wire.warmup_intervals,
            measure_intervals=wire.measure_intervals,
            params=expected,
            processes=wire.processes,
            connections=wire.connections,
            intervals=tuple(intervals),
            errors=dict(wire.errors),
        )
    except ValueError as exc:
        raise refuse(str(exc)) from exc


def first_problem(exc: ValidationError) -> str:
    """pydantic's first error as ``path: message``, so a refusal stays one line."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "(document)"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
