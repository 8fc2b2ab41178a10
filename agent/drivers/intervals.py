"""Interval data and the load report: the data model a driver produces. Pure (no I/O).

One :class:`IntervalData` is one sampling interval of one load process or, merged, of the
whole agent. Merging (:func:`merge_intervals`) adds histograms (never percentiles) and sums
counters. Counters, as the coordinator reads them (``coordinator/core/stats.py``):

* ``commands[NAME].count``: replies to NAME that were not errors, recorded in the command's
  histogram, plus those whose latency was beyond the histogram's range;
* ``overflow``: those beyond the range, over all commands (not in any histogram);
* ``requests``: requests finished in the interval: ``sum(count)`` + error replies;
* ``errors``: failures by type: an error reply's prefix (``WRONGTYPE``, ``OOM``, ``NOAUTH``,
  ``ERR``...) one per reply, and ``connection``: one per request lost in flight when its
  connection failed (at least one per failure) and one per failed reconnection attempt;
* ``bytes_sent`` / ``bytes_received``: on the load connections (RESP, all included).

An interval is ``complete`` when the load ran over all of it in every load process: a load
stopped early, or started late, leaves its interval incomplete.

The load report, format 1 (:meth:`LoadReport.to_json`)::

    {"format": 1, "driver": "builtin", "t0_ns": int, "started_ns": int,
     "start_spread_ns": int, "stopped_ns": int, "interval_ns": int,
     "warmup_intervals": int, "measure_intervals": int,
     "histogram": {"lowest_usec": 1, "highest_usec": 60000000, "significant_figures": 3},
     "processes": int, "connections": int,
     "intervals": [{"index": int, "phase": "warmup" | "measure", "complete": bool,
                    "commands": {NAME: {"histogram": BASE64, "count": int}},
                    "requests": int, "errors": {TYPE: int}, "bytes_sent": int,
                    "bytes_received": int, "overflow": int}],
     "errors": {TYPE: int}}

``started_ns`` is the earliest first send of any load process and ``start_spread_ns`` the
latest minus the earliest; ``stopped_ns`` when the last one stopped; all in the agent's clock.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from agent.histograms import CommandLatencies, HistogramParams, encode, merge_encoded

#: The load report format written by this agent.
REPORT_FORMAT: Final = 1


@dataclass(frozen=True)
class IntervalData:
    index: int
    phase: str
    complete: bool
    commands: Mapping[str, CommandLatencies] = field(default_factory=dict)
    requests: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0
    overflow: int = 0

    @property
    def count(self) -> int:
        """Replies that were not errors, over all commands."""
        return sum(command.count for command in self.commands.values())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "phase": self.phase,
            "complete": self.complete,
            "commands": {
                name: {"histogram": command.histogram, "count": command.count}
                for name, command in sorted(self.commands.items())
            },
            "requests": self.requests,
            "errors": dict(sorted(self.errors.items())),
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "overflow": self.overflow,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IntervalData:
        """The inverse of :meth:`to_json`; ValueError (or KeyError) on malformed data."""
        commands = {
            str(name): CommandLatencies(_text(value["histogram"]), _count(value["count"]))
            for name, value in dict(data["commands"]).items()
        }
        return cls(
            index=_count(data["index"]),
            phase=_text(data["phase"]),
            complete=bool(data["complete"]),
            commands=commands,
            requests=_count(data["requests"]),
            errors={str(kind): _count(n) for kind, n in dict(data["errors"]).items()},
            bytes_sent=_count(data["bytes_sent"]),
            bytes_received=_count(data["bytes_received"]),
            overflow=_count(data["overflow"]),
        )


def merge_intervals(
    parts: Sequence[IntervalData], params: HistogramParams, expected_parts: int
) -> IntervalData:
    """One interval from the same interval of several load processes: histograms added,
    counters summed; complete only if all ``expected_parts`` reported it complete."""
    if not parts:
        raise ValueError("nothing to merge")
    index = parts[0].index
    if any(part.index != index for part in parts):
        raise ValueError("cannot merge different intervals")
    by_command: dict[str, list[CommandLatencies]] = {}
    for part in parts:
        for name, command in part.commands.items():
            by_command.setdefault(name, []).append(command)
    commands = {}
    for name, samples in sorted(by_command.items()):
        if len(samples) == 1:
            commands[name] = samples[0]
            continue
        merged = merge_encoded((sample.histogram for sample in samples), params)
        commands[name] = CommandLatencies(encode(merged), sum(s.count for s in samples))
    return IntervalData(
        index=index,
        phase=parts[0].phase,
        complete=len(parts) == expected_parts and all(part.complete for part in parts),
        commands=commands,
        requests=sum(part.requests for part in parts),
        errors=sum_errors(part.errors for part in parts),
        bytes_sent=sum(part.bytes_sent for part in parts),
        bytes_received=sum(part.bytes_received for part in parts),
        overflow=sum(part.overflow for part in parts),
    )


def sum_errors(counters: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for counter in counters:
        total.update(counter)
    return {kind: n for kind, n in sorted(total.items()) if n}


def p99_usec(interval: IntervalData, params: HistogramParams) -> float | None:
    """The 99th percentile over all commands of ``interval`` (None without replies)."""
    merged = merge_encoded((command.histogram for command in interval.commands.values()), params)
    if not merged.get_total_count():
        return None
    return float(merged.get_value_at_percentile(99.0))


@dataclass(frozen=True)
class LoadReport:
    driver: str
    t0_ns: int
    started_ns: int
    start_spread_ns: int
    stopped_ns: int
    interval_ns: int
    warmup_intervals: int
    measure_intervals: int
    histogram: HistogramParams
    processes: int
    connections: int
    intervals: tuple[IntervalData, ...]

    @property
    def errors(self) -> dict[str, int]:
        return sum_errors(interval.errors for interval in self.intervals)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "driver": self.driver,
            "t0_ns": self.t0_ns,
            "started_ns": self.started_ns,
            "start_spread_ns": self.start_spread_ns,
            "stopped_ns": self.stopped_ns,
            "interval_ns": self.interval_ns,
            "warmup_intervals": self.warmup_intervals,
            "measure_intervals": self.measure_intervals,
            "histogram": self.histogram.to_json(),
            "processes": self.processes,
            "connections": self.connections,
            "intervals": [interval.to_json() for interval in self.intervals],
            "errors": self.errors,
        }

    def to_text(self) -> str:
        return json.dumps(self.to_json())


def _count(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"expected a count, got {value!r}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value
