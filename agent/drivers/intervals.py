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
  ``timeout``: one per request still unanswered when the end-of-phase drain limit passed
  (counted in the last interval);
* ``bytes_sent`` / ``bytes_received``: on the load connections (RESP, all included);
* ``gap_usec``: the longest time one connection went without a reply, over the interval's
  connections: between two consecutive replies (the first reply counts from the first send),
  or, for a reply still awaited when the interval ended, from the last one to that end. A
  stall shows here even in an interval with no reply at all. Merged as a max.
* ``open_loop`` (:class:`OpenLoopData`; null in a closed loop): the open loop's schedule
  (agent/drivers/schedule.py): requests ``sent`` in the interval (the achieved rate is
  ``sent`` / interval), ``late`` (sent more than 1 ms after their intended time), the largest
  lateness (``lateness_max_usec``), and ``not_sent``: requests whose intended time had passed
  at the interval's end but that were not sent yet; ``late_waiting`` and ``not_sent_waiting``:
  of those, the ones whose connection was not free at their intended time (still awaiting
  its previous reply, or connecting): they queued behind the server, not behind the loop;
  ``lateness``: the distribution of every batch's lateness (µs, send minus intended time, an
  encoded HdrHistogram with the latencies' settings); ``lateness_waiting``: of those, the
  batches that queued behind a connection not free at their point (empty when the loop was
  saturated, as ``late_waiting`` is), so ``lateness`` less ``lateness_waiting`` is the load
  process's own lateness. Summed, added, the largest lateness a max.
* ``redirects`` (a Redis Cluster): ``MOVED`` and ``ASK`` replies followed, by kind: each is one
  re-send of a request, not a request of its own (the request counts once, with its final
  reply; agent/drivers/cluster_redirects.py). Summed.
* ``shards`` (a Redis Cluster): per primary (``host:port``), the non-error replies it gave and
  their latencies (an encoded HdrHistogram): the same replies as ``commands``, split by the
  node that answered. Added.

An interval is ``complete`` when the load ran over all of it in every load process: a load
stopped early, or started late, leaves its interval incomplete.

The load report, format 1, is the :class:`LoadReport` message below, one schema for the agent
that writes it and the coordinator that reads it (:meth:`LoadReport.from_text`, the strict
reader of :mod:`agent.messages`)::

    {"format": 1, "driver": "builtin", "t0_ns": int, "started_ns": int,
     "start_spread_ns": int, "stopped_ns": int, "interval_ns": int,
     "first_request_spread_ns": int, "window_ns": int | null,
     "warmup_intervals": int, "measure_intervals": int,
     "histogram": {"lowest_usec": 1, "highest_usec": 60000000, "significant_figures": 3},
     "processes": int, "connections": int,
     "intervals": [{"index": int, "phase": "warmup" | "measure", "complete": bool,
                    "commands": {NAME: {"histogram": BASE64, "count": int}},
                    "requests": int, "errors": {TYPE: int}, "bytes_sent": int,
                    "bytes_received": int, "overflow": int, "gap_usec": int,
                    "open_loop": null | {"sent": int, "late": int,
                                         "lateness_max_usec": int, "not_sent": int,
                                         "lateness": BASE64, "late_waiting": int,
                                         "not_sent_waiting": int,
                                         "lateness_waiting": BASE64},
                    "redirects": {"MOVED" | "ASK": int},
                    "shards": {HOST:PORT: {"histogram": BASE64, "count": int}}}],
     "format": 1}

A load process's start is the instant its first request was sent (its connections' first
``send`` calls returned, the earliest of them: agent.drivers.kit.timed). ``started_ns`` is the
earliest start of any load process and ``start_spread_ns`` the latest minus the earliest;
``first_request_spread_ns`` the latest first request of any connection minus ``started_ns``
(so at least ``start_spread_ns``); ``stopped_ns`` when the last one stopped; all in the agent's
clock.
The report's errors by type are the sum of its intervals' (:attr:`LoadReport.errors`).

``window_ns`` is set by a one-window driver only (an external tool whose measured run is the
report's one measure interval): the measured run's length from ``started_ns``, the tool's own
elapsed time where it prints one, else its spawn to its exit (over several load processes, the
latest end minus ``started_ns``). The coordinator divides the agent's counts by it rather than
by the interval grid's length (``benchmark.duration``), which the tool's run need not match.
Null for interval drivers: their window is the grid's intervals.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from agent import messages
from agent.histograms import (
    CommandLatencies,
    HistogramParams,
    encode,
    merge_encoded,
    percentiles,
)

#: The load report format written by this agent.
REPORT_FORMAT: Final = 1
#: The phases an interval belongs to.
PHASES: Final = ("warmup", "measure")
#: An open loop whose share of requests sent late exceeds this is behind its schedule...
BEHIND_LATE_SHARE: Final = 0.01
#: ... if more than this many were late in the interval. Without the floor a few late sends
#: flagged a slow rate: at 200 requests/s, 3 of 200 sends over 1 ms late (a busy 2-core
#: machine's jitter) made an interval behind and stopped a rate ramp at its first rate. The
#: floor is the 1 % of 1,000 sends: above 1,000 sends an interval, only the share counts.
BEHIND_LATE_FLOOR: Final = 10


@dataclass(frozen=True)
class ScheduleLateness:
    """An open loop's lateness over one interval, µs -> batches, before it is encoded: of
    every batch sent, and of the batches among them that queued behind a connection not free at
    their point (their lateness is the server's; the rest is the load process's own)."""

    every: Mapping[int, int]
    waiting: Mapping[int, int]


@dataclass(frozen=True)
class OpenLoopData:
    """One interval of an open loop's schedule (see the module's docstring)."""

    sent: int = 0
    late: int = 0
    lateness_max_usec: int = 0
    not_sent: int = 0
    lateness: str = ""  # the lateness of every batch sent, µs, an encoded HdrHistogram
    late_waiting: int = 0  # of ``late``, queued behind a connection that was not free
    not_sent_waiting: int = 0  # of ``not_sent``, the same
    lateness_waiting: str = ""  # of ``lateness``, the batches that queued, the same way

    def __post_init__(self) -> None:
        _counts(sent=self.sent, late=self.late, lateness_max_usec=self.lateness_max_usec,
                not_sent=self.not_sent, late_waiting=self.late_waiting,
                not_sent_waiting=self.not_sent_waiting)
        if self.late_waiting > self.late or self.not_sent_waiting > self.not_sent:
            raise ValueError("late_waiting and not_sent_waiting are parts of late and not_sent")

    @property
    def behind_schedule(self) -> bool:
        """The load did not keep its schedule in this interval: requests were left unsent, or
        more than :data:`BEHIND_LATE_SHARE` of those sent, and more than
        :data:`BEHIND_LATE_FLOOR`, went out late."""
        return _behind(self.sent, self.late, self.not_sent)

    @property
    def loop_behind(self) -> bool:
        """The load process itself fell behind its schedule: :attr:`behind_schedule`, counting
        only the requests whose connection was free at their intended time. A request queued
        behind an unanswered one waited for the server (a stall shows in the latencies, which
        count from the intended time), not for the client."""
        return _behind(self.sent, self.late - self.late_waiting,
                       self.not_sent - self.not_sent_waiting)

    @classmethod
    def merge(
        cls, parts: Iterable[OpenLoopData | None], params: HistogramParams
    ) -> OpenLoopData | None:
        """Several processes' schedules: counts summed, lateness the largest; None if none
        ran an open loop."""
        present = [part for part in parts if part is not None]
        if not present:
            return None
        return cls.summed(
            present, encode(merge_encoded((p.lateness for p in present if p.lateness), params)),
            encode(merge_encoded((p.lateness_waiting for p in present if p.lateness_waiting),
                                 params)))

    @classmethod
    def summed(cls, parts: Sequence[OpenLoopData], lateness: str,
               lateness_waiting: str) -> OpenLoopData:
        """Several processes' schedules (at least one) with their merged ``lateness`` and
        ``lateness_waiting``: counts summed, the largest lateness the largest."""
        return cls(
            sent=sum(part.sent for part in parts),
            late=sum(part.late for part in parts),
            lateness_max_usec=max(part.lateness_max_usec for part in parts),
            not_sent=sum(part.not_sent for part in parts),
            lateness=lateness,
            late_waiting=sum(part.late_waiting for part in parts),
            not_sent_waiting=sum(part.not_sent_waiting for part in parts),
            lateness_waiting=lateness_waiting,
        )


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
    gap_usec: int = 0
    open_loop: OpenLoopData | None = None
    redirects: Mapping[str, int] = field(default_factory=dict)
    shards: Mapping[str, CommandLatencies] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Replies that were not errors, over all commands."""
        return sum(command.count for command in self.commands.values())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase {self.phase!r} is not one of {', '.join(PHASES)}")
        _counts(
            index=self.index, requests=self.requests, bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received, overflow=self.overflow, gap_usec=self.gap_usec,
            **{f"errors.{kind}": n for kind, n in self.errors.items()},
            **{f"redirects.{kind}": n for kind, n in self.redirects.items()},
            **{f"commands.{name}.count": c.count for name, c in self.commands.items()},
            **{f"shards.{name}.count": c.count for name, c in self.shards.items()},
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        encoded: dict[str, Any] = messages.encode(self)
        return encoded

    @classmethod
    def from_json(cls, data: object) -> IntervalData:
        """The inverse of :meth:`to_json`; ``MessageError`` (a ValueError) on malformed data."""
        return messages.decode(cls, data)


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
    commands = merge_latencies([part.commands for part in parts], params)
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
        gap_usec=max(part.gap_usec for part in parts),
        open_loop=OpenLoopData.merge((part.open_loop for part in parts), params),
        redirects=sum_errors(part.redirects for part in parts),
        shards=merge_latencies([part.shards for part in parts], params),
    )


def merge_latencies(
    parts: Sequence[Mapping[str, CommandLatencies]], params: HistogramParams
) -> dict[str, CommandLatencies]:
    """Histograms by name (commands, or a cluster's primaries) of several processes, added."""
    by_name: dict[str, list[CommandLatencies]] = {}
    for part in parts:
        for name, latencies in part.items():
            by_name.setdefault(name, []).append(latencies)
    merged = {}
    for name, samples in sorted(by_name.items()):
        if len(samples) == 1:
            merged[name] = samples[0]
            continue
        histogram = merge_encoded((sample.histogram for sample in samples), params)
        merged[name] = CommandLatencies(encode(histogram), sum(s.count for s in samples))
    return merged


def sum_errors(counters: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for counter in counters:
        total.update(counter)
    return {kind: n for kind, n in sorted(total.items()) if n}


def p99_usec(interval: IntervalData, params: HistogramParams) -> float | None:
    """The 99th percentile over all commands of ``interval`` (None without replies), read as
    everywhere else (:func:`agent.histograms.percentiles`)."""
    merged = merge_encoded((command.histogram for command in interval.commands.values()), params)
    if not merged.get_total_count():
        return None
    return float(percentiles(merged, [99.0])[99.0])


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
    first_request_spread_ns: int = 0
    window_ns: int | None = None

    format: int = REPORT_FORMAT

    def __post_init__(self) -> None:
        if self.format != REPORT_FORMAT:
            raise ValueError(f"format {self.format!r} is not {REPORT_FORMAT}")
        if self.interval_ns <= 0:
            raise ValueError(f"interval_ns must be > 0, got {self.interval_ns}")
        if self.window_ns is not None and self.window_ns <= 0:
            raise ValueError(f"window_ns must be > 0 or null, got {self.window_ns}")
        _counts(
            start_spread_ns=self.start_spread_ns,
            first_request_spread_ns=self.first_request_spread_ns,
            warmup_intervals=self.warmup_intervals,
            measure_intervals=self.measure_intervals,
        )

    @property
    def errors(self) -> dict[str, int]:
        return sum_errors(interval.errors for interval in self.intervals)

    def to_json(self) -> dict[str, Any]:
        encoded: dict[str, Any] = messages.encode(self)
        return encoded

    def to_text(self) -> str:
        return messages.to_text(self)

    @classmethod
    def from_text(cls, text: str | bytes) -> LoadReport:
        """The strict reader: ``MessageError`` (one line, naming the field) for anything that
        is not a format-1 report."""
        return messages.from_text(cls, text)


def _behind(sent: int, late: int, not_sent: int) -> bool:
    return not_sent > 0 or late > max(sent * BEHIND_LATE_SHARE, BEHIND_LATE_FLOOR)


def _counts(**values: int) -> None:
    """ValueError naming the first of ``values`` that is negative."""
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
