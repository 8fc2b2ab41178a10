"""The timed-load skeleton of a load process: wait for T0, the interval grid on T0, interval
rolling, the end.

Intervals are aligned on T0 in the agent's clock (:class:`~agent.drivers.spec.Timeline`:
warm-up intervals, then measure intervals). The grid converts their boundaries once to
``perf_counter_ns`` at the first send; a load loop asks :meth:`IntervalGrid.roll` when the
clock passes :attr:`IntervalGrid.boundary`. What a load process tells the agent::

    started {first_send_ns, first_spread_ns}, interval {...} per interval,
    finished {stopped_ns, reason}

(a one-window driver's ``started`` also carries ``window_ns``, its measured run's length:
:class:`agent.drivers.intervals.LoadReport`).

``first_send_ns`` is the instant (agent clock) the process's first request was sent: read as
each connection's first ``send`` returned, the earliest of them; ``first_spread_ns`` the latest
of those minus the earliest. That, not the end of the wait for T0, is when the load started.
``reason`` is ``completed`` (the planned end) or ``stopped`` (the agent said stop: the interval
in progress is reported incomplete).

A load may drain at the planned end (:attr:`~agent.drivers.spec.Timeline.drain_ns`): it stops
sending, waits for the replies still in flight and only then reports the last interval, with
them in it. Its loop reports that interval itself, even when a stop cuts the drain short.

Waiting for T0 (:data:`START_WAITS`, chosen by :attr:`Timeline.start_wait`; figures of each in
docs/methodology.md): ``spin`` sleeps until 2 ms before T0, then spins on the clock;
``sleep-spin`` sleeps (absolute ``clock_nanosleep`` on ``CLOCK_REALTIME``, timer slack
lowered to 1 ns) until 100 µs before T0, then spins; ``sleep`` sleeps to T0 itself. A spin
holds a core: with more load processes than free cores, spinning processes delay each other.
The sleeps listen for a stop from the agent until 20 ms before T0, not in those last 20 ms.
During the sleeps and the first sends the process asks the scheduler for a short slice
(:mod:`agent.drivers.kit.sched_slice`), so it preempts what runs on its core as it wakes
rather than waiting for that task's slice to end; the load itself runs with the default.
"""

from __future__ import annotations

import ctypes
import select
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from agent.drivers.channel import Channel, ChannelClosed
from agent.drivers.kit.sched_slice import DEFAULT_SLICE, SHORT_SLICE_NS, request_slice
from agent.drivers.spec import SLEEP_SPIN, SPIN, Timeline

#: ``spin``: sleep (``select``) until this long before T0, then spin on the clock.
SPIN_BEFORE_NS = 2_000_000
#: ``sleep-spin``: sleep (absolute, slack lowered) until this long before T0, then spin.
SHORT_SPIN_NS = 100_000
#: The interruptible sleep ends this long before an absolute sleep takes over.
ABSOLUTE_SLEEP_NS = 20_000_000
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

    def begin(self, grid: IntervalGrid) -> Sequence[int]:
        """The first sends, right at T0; the instant (``time.time_ns()``) each connection's
        first ``send`` returned, for those that sent."""

    def loop(self, grid: IntervalGrid) -> str:
        """Load until the grid is over (:data:`COMPLETED`) or a stop (:data:`STOPPED`),
        reporting each interval that :meth:`IntervalGrid.roll` returns."""

    def report_interval(self, index: int, *, complete: bool) -> None:
        """Send interval ``index`` to the agent and start the next one empty."""


def run_timed(channel: Channel, timeline: Timeline, t0_ns: int, load: TimedLoad) -> None:
    """Wait for T0 (unless stopped first), run ``load`` on the grid, report its end."""
    if not wait_for_t0(channel, t0_ns, timeline.start_wait):
        finish(channel, STOPPED)
        return
    woke_ns = time.time_ns()
    grid = IntervalGrid.at_first_send(timeline, t0_ns, woke_ns, time.perf_counter_ns())
    if grid.over:
        finish(channel, COMPLETED)  # started after the planned end: nothing to do
        return
    sends = load.begin(grid)
    request_slice(DEFAULT_SLICE)  # the wake-up is over: the load runs with the default slice
    if not sends:  # nothing went out (every connection failed): the load began anyway
        sends = [time.time_ns()]
    channel.send({"type": "started", "first_send_ns": min(sends),
                  "first_spread_ns": max(sends) - min(sends)})
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


def wait_for_t0(channel: Channel, t0_ns: int, how: str) -> bool:
    """Wait until ``t0_ns`` (agent clock) the ``how`` way (:data:`START_WAITS`); False if the
    agent said stop first."""
    if how == SPIN:
        if not wait_until(channel, t0_ns - SPIN_BEFORE_NS):
            return False
        spin_until(t0_ns)
        return True
    lower_timer_slack()
    request_slice(SHORT_SLICE_NS)  # preempt what runs on the core when the sleep ends
    if not wait_until(channel, t0_ns - ABSOLUTE_SLEEP_NS):
        return False
    if how == SLEEP_SPIN:
        sleep_until(t0_ns - SHORT_SPIN_NS)
        spin_until(t0_ns)
    else:
        sleep_until(t0_ns)
    return True


def spin_until(wall_ns: int) -> None:
    """Read the clock until it reaches ``wall_ns``: precise, and a core held meanwhile."""
    clock = time.time_ns
    while clock() < wall_ns:
        pass


_PR_SET_TIMERSLACK: Final = 29
_CLOCK_REALTIME: Final = 0
_TIMER_ABSTIME: Final = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC: Final = _libc()


def lower_timer_slack() -> None:
    """Ask Linux to wake this process's timers within 1 ns, not the default 50 µs."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)


def sleep_until(wall_ns: int) -> None:
    """Sleep until the wall clock reads ``wall_ns``: ``clock_nanosleep(CLOCK_REALTIME,
    TIMER_ABSTIME)`` (no drift between reading the clock and sleeping), ``time.sleep`` of the
    remainder where that call is missing."""
    if _LIBC is None:
        remaining = wall_ns - time.time_ns()
        if remaining > 0:
            time.sleep(remaining / 1e9)
        return
    when = _Timespec(wall_ns // 1_000_000_000, wall_ns % 1_000_000_000)
    while _LIBC.clock_nanosleep(_CLOCK_REALTIME, _TIMER_ABSTIME, ctypes.byref(when), None):
        if time.time_ns() >= wall_ns:  # EINTR after the instant, or an unexpected error
            return


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
