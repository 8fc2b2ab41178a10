"""One load process's current interval: latencies per command and counters, rolled into an
:class:`~agent.drivers.intervals.IntervalData` once per interval.

A hot loop takes a command's live ``{latency_usec: count}`` dict once (:meth:`bucket`) and
adds to it directly, and keeps its counters in locals it adds here now and then: rolling
empties everything in place, so the dicts it holds stay valid.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.drivers.intervals import IntervalData, OpenLoopData
from agent.drivers.spec import Timeline
from agent.histograms import HistogramParams, IntervalRecorder


class LoadRecorder:
    """Latencies, requests, bytes and errors of the interval in progress."""

    def __init__(self, params: HistogramParams, commands: Iterable[str],
                 timeline: Timeline) -> None:
        self.timeline = timeline
        self.latencies = IntervalRecorder(params, commands)
        self.requests = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.gap_ns = 0  # the longest wait for a reply on one connection, this interval
        self.errors: dict[str, int] = {}
        self.open_loop: OpenLoopData | None = None  # set by an open loop before each roll
        self.redirects: dict[str, int] = {}  # a cluster's MOVED/ASK followed, by kind
        self.shards: IntervalRecorder | None = None  # a cluster: latencies per primary

    def bucket(self, command: str) -> dict[int, int]:
        """The live ``{latency_usec: count}`` dict of ``command`` (latency at least 1)."""
        return self.latencies.bucket(command)

    def count_error(self, kind: str, count: int = 1) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + count

    def count_redirect(self, kind: str, count: int = 1) -> None:
        self.redirects[kind] = self.redirects.get(kind, 0) + count

    def note_gap(self, gap_ns: int) -> None:
        """A connection went ``gap_ns`` without a reply (kept if the longest so far)."""
        self.gap_ns = max(self.gap_ns, gap_ns)

    def roll(self, index: int, *, complete: bool) -> IntervalData:
        """Interval ``index`` as recorded; the next one starts empty."""
        recorded = self.latencies.roll(index)
        errors, self.errors = self.errors, {}
        redirects, self.redirects = self.redirects, {}
        shards = self.shards.roll(index).commands if self.shards is not None else {}
        data = IntervalData(
            index=index,
            phase=self.timeline.phase(index),
            complete=complete,
            commands=recorded.commands,
            requests=self.requests,
            errors=errors,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
            overflow=recorded.overflow,
            gap_usec=(self.gap_ns + 500) // 1000,
            open_loop=self.open_loop,
            redirects=redirects,
            shards=shards,
        )
        self.open_loop = None
        self.requests = self.bytes_sent = self.bytes_received = self.gap_ns = 0
        return data
