"""The timed-load skeleton of a load process: wait for T0, the interval grid on T0, interval
rolling, the end.

Intervals are aligned on T0 in the agent's clock (:class:`~agent.drivers.spec.Timeline`:
warm-up intervals, then measure intervals). The grid converts their boundaries once to
``perf_counter_ns`` at the first send; a load loop asks :meth:`IntervalGrid.roll` when the
clock passes :attr:`IntervalGrid.boundary`. What a load process tells the agent::

    started {first_send_ns}, interval {...} per interval, finished {stopped_ns, reason}

``reason`` is ``completed`` (the planned end) or ``stopped`` (the agent said stop: the interval
in progress is reported incomplete).

A load may drain at the planned end (:attr:`~agent.drivers.spec.Timeline.drain_ns`): it stops
sending, waits for the replies still in flight and only then reports the last interval, with
them in it. Its loop reports that interval itself, even when a stop cuts the drain short.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass
from typing import Final, Protocol

from agent.drivers.channel import Channel, ChannelClosed
from agent.drivers.spec import Timeline

#: Sleep until this long before T0, then spin on the clock (a sleep wakes too late).
SPIN_BEFORE_NS = 2_000_000
#: A load process that starts this fraction of an interval late leaves the interval incomplete.
START_TOLERANCE = 0.01

COMPLETED: Final = "completed"
STOPPED: Final = "stopped"


@dataclass
class IntervalGrid:
    """Where a running load is on the T0 grid, in the perf clock."""

    timeline: Timeline
    index: int  # the interval in progress
    boundary: int  # its end
    end: int  # the planned end of the measure phase
    first_complete: bool  # whether the interval in progress was wholly covered

    @classmethod
    def at_first_send(cls, timeline: Timeline, t0_ns: int, first_send_ns: int,
                      perf_ns: int) -> IntervalGrid:
        """The grid of a load whose first send is at ``first_send_ns`` (agent clock), read
        together with ``perf_ns`` (perf clock)."""
        interval_ns = timeline.interval_ns
        perf0 = perf_ns - (first_send_ns - t0_ns)  # T0 on the perf clock
        index = (first_send_ns - t0_ns) // interval_ns
        late = first_send_ns - (t0_ns + index * interval_ns)
        return cls(
            timeline=timeline,
            index=index,
            boundary=perf0 + (index + 1) * interval_ns,
            end=perf0 + timeline.intervals * interval_ns,
            first_complete=late <= interval_ns * START_TOLERANCE,
        )

    @property
    def over(self) -> bool:
        """Every interval of the timeline has ended."""
        return self.index >= self.timeline.intervals

    def roll(self, now: int) -> list[tuple[int, bool]]:
        """The intervals that ended by ``now`` (index, complete), the grid moved past them."""
        ended = []
        while now >= self.boundary and not self.over:
            ended.append((self.index, self.first_complete))
            self.first_complete = True
            self.index += 1
            self.boundary += self.timeline.interval_ns
        return ended


class TimedLoad(Protocol):
    """The load-specific half of :func:`run_timed`."""

    def begin(self, grid: IntervalGrid) -> None:
        """The first sends, right at T0."""

    def loop(self, grid: IntervalGrid) -> str:
        """Load until the grid is over (:data:`COMPLETED`) or a stop (:data:`STOPPED`),
        reporting each interval that :meth:`IntervalGrid.roll` returns."""

    def report_interval(self, index: int, *, complete: bool) -> None:
        """Send interval ``index`` to the agent and start the next one empty."""


def run_timed(channel: Channel, timeline: Timeline, t0_ns: int, load: TimedLoad) -> None:
    """Wait for T0 (unless stopped first), run ``load`` on the grid, report its end."""
    if not wait_until(channel, t0_ns - SPIN_BEFORE_NS):
        finish(channel, STOPPED)
        return
    while time.time_ns() < t0_ns:
        pass
    first_send_ns = time.time_ns()
    grid = IntervalGrid.at_first_send(timeline, t0_ns, first_send_ns, time.perf_counter_ns())
    if grid.over:
        finish(channel, COMPLETED)  # started after the planned end: nothing to do
        return
    load.begin(grid)
    channel.send({"type": "started", "first_send_ns": first_send_ns})
    reason = load.loop(grid)
    if reason == STOPPED and not grid.over:  # (a load stopped while draining reported it)
        load.report_interval(grid.index, complete=False)
    finish(channel, reason)


def finish(channel: Channel, reason: str) -> None:
    channel.send({"type": "finished", "stopped_ns": time.time_ns(), "reason": reason})


def stop_requested(channel: Channel) -> bool:
    """Read the agent's messages that arrived; True if it said stop (or went away)."""
    try:
        channel.read_available()
        messages = channel.take()
    except ChannelClosed:
        return True
    return any(message["type"] == "stop" for message in messages)


def wait_until(channel: Channel, wall_ns: int) -> bool:
    """Sleep until ``wall_ns`` (agent clock) unless the agent says stop; False if it did."""
    while True:
        if any(message["type"] == "stop" for message in channel.take()):
            return False
        remaining = wall_ns - time.time_ns()
        if remaining <= 0:
            return True
        readable, _, _ = select.select([channel.sock], [], [], remaining / 1e9)
        if readable:
            try:
                channel.read_available()
            except ChannelClosed:
                return False
