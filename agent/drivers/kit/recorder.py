"""One load process's current interval: latencies per command and counters, rolled into an
:class:`~agent.drivers.intervals.IntervalData` once per interval.

A hot loop takes a command's live ``{latency_usec: count}`` dict once (:meth:`bucket`) and
adds to it directly, and keeps its counters in locals it adds here now and then: rolling
empties everything in place, so the dicts it holds stay valid.

Rolling has two halves. :meth:`LoadRecorder.take` takes the interval's dicts (swapped for
fresh ones, or copied) and counters and starts the next interval empty. Encoding the dicts
into HdrHistograms
(:class:`IntervalEncoding`) costs milliseconds (0.4 µs per distinct latency, then the varint
and zlib encoding and the message): a loop that did it at the boundary stalled that long, so
every reply then waiting had that stall in its latency and, in an open loop, every send due
then went out late (7-13 ms once a second, measured). So a loop takes the interval at the
boundary and encodes it a slice at a time between its rounds (:meth:`IntervalEncoding.step`);
:meth:`LoadRecorder.roll` does both at once, for loads with no such loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Final

from agent.drivers.intervals import IntervalData, OpenLoopData
from agent.drivers.spec import Timeline
from agent.histograms import (
    CommandLatencies,
    HistogramParams,
    IntervalRecorder,
    clear,
    encode,
    record_pairs,
)

#: Latencies recorded per :meth:`IntervalEncoding.step` (about 0.4 µs each: some 50 µs).
STEP_VALUES: Final = 128


@dataclass
class TakenInterval:
    """An interval taken from the recorder at its end, not encoded yet: its latencies as
    ``{µs: count}`` dicts no longer recorded into, its counters as they were."""

    index: int
    phase: str
    complete: bool
    latencies: dict[str, dict[int, int]]
    shards: dict[str, dict[int, int]]
    requests: int
    errors: dict[str, int]
    bytes_sent: int
    bytes_received: int
    gap_usec: int
    redirects: dict[str, int]
    open_loop: OpenLoopData | None
    lateness: dict[int, int] | None = None
    """An open loop's lateness distribution (µs), encoded into ``open_loop.lateness``."""


@dataclass
class _Histogram:
    """One ``{µs: count}`` dict of a taken interval, recorded a slice at a time, then
    encoded."""

    kind: str  # "command", "shard" or "lateness"
    name: str
    counts: dict[int, int]
    recorder: IntervalRecorder
    pairs: Iterator[tuple[int, int]] = field(init=False)
    count: int = 0  # the dict's total, counted when it is encoded
    recorded: bool = False  # every pair recorded into the scratch histogram
    overflow: int = 0
    encoded: str | None = None

    def __post_init__(self) -> None:
        self.pairs = iter(self.counts.items())  # (the dict is no longer recorded into)


@dataclass
class IntervalEncoding:
    """A :class:`TakenInterval` encoded a step at a time; :meth:`step` until it returns True,
    then :meth:`result` (:meth:`finish` does it all at once)."""

    taken: TakenInterval
    histograms: list[_Histogram] = field(default_factory=list)

    @classmethod
    def of(cls, taken: TakenInterval, latencies: IntervalRecorder,
           shards: IntervalRecorder | None) -> IntervalEncoding:
        histograms = [_Histogram("command", name, counts, latencies)
                      for name, counts in taken.latencies.items()]
        if shards is not None:
            histograms += [_Histogram("shard", name, counts, shards)
                           for name, counts in taken.shards.items()]
        if taken.lateness is not None:
            histograms.append(_Histogram("lateness", "", taken.lateness, latencies))
        return cls(taken, histograms)

    def step(self) -> bool:
        """One slice of the work: :data:`STEP_VALUES` latencies recorded, or one histogram
        encoded. True once everything is encoded."""
        for histogram in self.histograms:
            if histogram.encoded is not None:
                continue
            scratch = histogram.recorder.scratch()
            if not histogram.recorded:
                chunk = list(islice(histogram.pairs, STEP_VALUES))
                histogram.overflow += record_pairs(scratch, chunk)
                histogram.recorded = len(chunk) < STEP_VALUES
                return False
            histogram.encoded = encode(scratch)
            histogram.count = sum(histogram.counts.values())
            clear(scratch)
            return histogram is self.histograms[-1]
        return True

    def finish(self) -> IntervalData:
        while not self.step():
            pass
        return self.result()

    def result(self) -> IntervalData:
        """The encoded interval (once :meth:`step` returned True)."""
        taken = self.taken
        commands: dict[str, CommandLatencies] = {}
        shards: dict[str, CommandLatencies] = {}
        open_loop = taken.open_loop
        overflow = 0
        for histogram in self.histograms:
            encoded = histogram.encoded or ""
            if histogram.kind == "command":
                commands[histogram.name] = CommandLatencies(encoded, histogram.count)
                overflow += histogram.overflow
            elif histogram.kind == "shard":
                shards[histogram.name] = CommandLatencies(encoded, histogram.count)
            elif open_loop is not None:
                open_loop = replace(open_loop, lateness=encoded)
        return IntervalData(
            index=taken.index,
            phase=taken.phase,
            complete=taken.complete,
            commands=commands,
            requests=taken.requests,
            errors=taken.errors,
            bytes_sent=taken.bytes_sent,
            bytes_received=taken.bytes_received,
            overflow=overflow,
            gap_usec=taken.gap_usec,
            open_loop=open_loop,
            redirects=taken.redirects,
            shards=shards,
        )


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
        """Interval ``index`` as recorded, encoded; the next one starts empty."""
        return self.encoding(self.take(index, complete=complete)).finish()

    def encoding(self, taken: TakenInterval) -> IntervalEncoding:
        """The encoding of a taken interval, to be stepped through."""
        return IntervalEncoding.of(taken, self.latencies, self.shards)

    def take(self, index: int, *, complete: bool, lateness: dict[int, int] | None = None,
             swap: bool = False) -> TakenInterval:
        """Interval ``index``'s dicts and counters; the next interval starts empty.
        ``lateness``: an open loop's distribution, no longer recorded into.

        The dicts are copied, then emptied in place, so a loop holding them keeps recording
        into the right ones; with ``swap`` they are replaced by fresh ones instead (no copy:
        a stall's thousands of distinct latencies cost milliseconds to copy), for a loop that
        reaches them only through :meth:`IntervalRecorder.live` lists."""
        if swap:
            latencies = self.latencies.take()
            shards = self.shards.take() if self.shards is not None else {}
        else:
            latencies = _copy_and_empty(self.latencies)
            shards = _copy_and_empty(self.shards) if self.shards is not None else {}
        errors, self.errors = self.errors, {}
        redirects, self.redirects = self.redirects, {}
        taken = TakenInterval(
            index=index, phase=self.timeline.phase(index), complete=complete,
            latencies=latencies, shards=shards, requests=self.requests, errors=errors,
            bytes_sent=self.bytes_sent, bytes_received=self.bytes_received,
            gap_usec=(self.gap_ns + 500) // 1000, redirects=redirects,
            open_loop=self.open_loop, lateness=lateness,
        )  # fmt: skip
        self.open_loop = None
        self.requests = self.bytes_sent = self.bytes_received = self.gap_ns = 0
        return taken


def _copy_and_empty(recorder: IntervalRecorder) -> dict[str, dict[int, int]]:
    """Copies of the recorder's non-empty dicts, by name, each then emptied in place."""
    taken = {}
    for name, bucket in recorder.buckets().items():
        if bucket:
            taken[name] = dict(bucket)
            bucket.clear()
    return taken
