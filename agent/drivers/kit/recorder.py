"""One load process's current interval: latencies per command and counters, taken once per
interval and sent as a :class:`~agent.drivers.kit.counted.CountedInterval`.

A hot loop takes a command's live ``{latency_usec: count}`` dict once (:meth:`bucket`) and
adds to it directly, and keeps its counters in locals it adds here now and then: rolling
empties everything in place, so the dicts it holds stay valid.

At an interval's end a loop takes it (:meth:`LoadRecorder.take`: the dicts swapped for fresh
ones, the counters) and packs its counts a slice at a time between its rounds
(:class:`IntervalPacking`: :data:`STEP_ITEMS` latencies a step, some 7 µs), so no send or read
waits long; the agent encodes them into HdrHistograms when the message arrives
(agent/drivers/kit/counted.py says why not here). :meth:`LoadRecorder.roll` does both at once,
for loads with no such loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from agent.drivers.intervals import OpenLoopData, ScheduleLateness
from agent.drivers.kit.counted import CountedInterval, CountsPacking, IntervalCounts
from agent.drivers.spec import Timeline
from agent.histograms import HistogramParams, IntervalRecorder

#: Latencies packed per :meth:`IntervalPacking.step` (about 13 ns each: some 7 µs, and the
#: base64 of a whole dict in its last step).
STEP_ITEMS: Final = 512


@dataclass
class IntervalPacking:
    """An :class:`IntervalCounts` packed a step at a time: :meth:`step` until it returns True,
    then :meth:`result` (:meth:`finish` does it all at once)."""

    taken: IntervalCounts
    commands: dict[str, CountsPacking] = field(init=False)
    shards: dict[str, CountsPacking] = field(init=False)
    lateness: CountsPacking | None = field(init=False)
    lateness_waiting: CountsPacking | None = field(init=False)
    _pending: list[CountsPacking] = field(init=False)

    def __post_init__(self) -> None:
        taken = self.taken
        self.commands = {name: CountsPacking(c) for name, c in taken.commands.items()}
        self.shards = {name: CountsPacking(c) for name, c in taken.shards.items()}
        self._pending = [*self.commands.values(), *self.shards.values()]
        self.lateness = self.lateness_waiting = None
        if taken.lateness is not None:
            self.lateness = CountsPacking(taken.lateness.every)
            self.lateness_waiting = CountsPacking(taken.lateness.waiting)
            self._pending += [self.lateness, self.lateness_waiting]
        self._pending.reverse()  # (popped from the end, in order)

    def step(self) -> bool:
        """Pack up to :data:`STEP_ITEMS` more latencies; True once all are."""
        if not self._pending:
            return True
        if self._pending[-1].step(STEP_ITEMS):
            self._pending.pop()
        return not self._pending

    def finish(self) -> CountedInterval:
        while not self.step():
            pass
        return self.result()

    def result(self) -> CountedInterval:
        """The packed interval (once :meth:`step` returned True)."""
        taken = self.taken
        return CountedInterval(
            index=taken.index, phase=taken.phase, complete=taken.complete,
            commands={name: packing.text() for name, packing in self.commands.items()},
            requests=taken.requests, errors=taken.errors, bytes_sent=taken.bytes_sent,
            bytes_received=taken.bytes_received, gap_usec=taken.gap_usec,
            open_loop=taken.open_loop,
            lateness=self.lateness.text() if self.lateness is not None else None,
            lateness_waiting=(self.lateness_waiting.text() if self.lateness_waiting is not None
                              else None),
            redirects=taken.redirects,
            shards={name: packing.text() for name, packing in self.shards.items()},
        )  # fmt: skip


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

    def roll(self, index: int, *, complete: bool) -> CountedInterval:
        """Interval ``index`` as recorded, packed; the next one starts empty."""
        return self.packing(self.take(index, complete=complete)).finish()

    @staticmethod
    def packing(taken: IntervalCounts) -> IntervalPacking:
        """The packing of a taken interval, to be stepped through."""
        return IntervalPacking(taken)

    def take(self, index: int, *, complete: bool, lateness: ScheduleLateness | None = None,
             swap: bool = False) -> IntervalCounts:
        """Interval ``index``'s dicts and counters; the next interval starts empty.
        ``lateness``: an open loop's distributions, no longer recorded into.

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
        taken = IntervalCounts(
            index=index, phase=self.timeline.phase(index), complete=complete,
            commands=latencies, shards=shards, requests=self.requests, errors=errors,
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
