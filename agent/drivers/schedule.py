"""The open loop's schedule: when each request should be sent, and how far behind it ran. Pure
(no I/O, no clock: every instant is passed in, in nanoseconds of one monotonic clock).

``benchmark.builtin.rate`` is a target of requests per second for a client host. It is spread
evenly over the host's connections (:func:`connection_rate`): each connection has its own
schedule of intended send times, one batch (``pipeline`` requests) per point, so a connection's
batch rate is ``rate / connections / pipeline``. Points are evenly spaced (``constant``) or
the arrivals of a Poisson process of the same mean rate (``poisson``: exponential gaps). The
connections' first points are staggered over one period (:func:`stagger`), so a host does not
send every connection's request at the same instant.

**A busy connection queues** (as wrk2 does). A connection has one batch in flight; when its
next point comes while it is still waiting for replies, the batch waits and goes out as soon as
the replies are in, late. Its latency is still measured from the intended send time (the point),
so the time spent waiting behind a stalled server is in the percentiles: this is the one
correction of coordinated omission coord makes, at the source (the histogram gets
``reply - intended`` and is never corrected again afterwards, e.g. by HdrHistogram's
``record_corrected_value``). Points whose time has passed but that are still queued behind a
busy connection when an interval ends are its ``not_sent`` (a queue length at that instant); at
the planned end they are never sent.

Accounting per interval (:class:`ScheduleCounters`): requests sent, requests sent late (more
than :data:`LATE_NS` after their point), the largest lateness, and the lateness distribution
(µs buckets, for the benchmark).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from agent.histograms import HistogramParams

#: The arrival processes ``arrivals`` accepts.
CONSTANT: Final = "constant"
POISSON: Final = "poisson"
ARRIVALS: Final = (CONSTANT, POISSON)

#: A request sent more than this after its intended time counts as late.
LATE_NS: Final = 1_000_000


def connection_rate(rate: float, connections: int, pipeline: int) -> float:
    """Batches per second one connection sends, for ``rate`` requests/s over ``connections``."""
    if rate <= 0 or connections < 1 or pipeline < 1:
        raise ValueError("rate, connections and pipeline must be positive")
    return rate / connections / pipeline


def stagger(index: int, total: int, period_ns: float) -> int:
    """The offset of connection ``index`` of ``total`` (over the whole host): spread evenly
    over one period."""
    return int(period_ns * index / total)


class ConnectionSchedule:
    """The intended send times of one connection: point k is ``start + offset + k·period``
    (constant), or the k-th arrival of a Poisson process of mean gap ``period`` after
    ``start + offset``.

    :attr:`due` is the next point not taken yet; :meth:`take` moves past it. Points are only
    generated forward, so the same seed gives the same points whatever the clock did."""

    __slots__ = ("_count", "_first", "_generated", "_period", "_random", "due")

    def __init__(self, first_ns: int, period_ns: float, rng: random.Random | None = None) -> None:
        if period_ns <= 0 or math.isinf(period_ns) or math.isnan(period_ns):
            raise ValueError("the period must be a positive number of nanoseconds")
        self._first = first_ns
        self._period = period_ns
        self._random = rng
        self._count = 0  # points taken
        self._generated: list[int] = []  # Poisson points after ``due`` already drawn
        self.due = first_ns

    @property
    def taken(self) -> int:
        """Points taken so far."""
        return self._count

    def _point_after(self, point: int) -> int:
        if self._random is None:
            return self._first + int((self._count + len(self._generated) + 1) * self._period)
        return point + max(1, int(self._random.expovariate(1.0) * self._period))

    def _constant_index(self, now: int) -> int:
        """The last constant point at or before ``now`` (the same rounding as the points)."""
        first, period = self._first, self._period
        index = int((now - first) // period)
        while first + int((index + 1) * period) <= now:
            index += 1
        while index >= 0 and first + int(index * period) > now:
            index -= 1
        return index

    def take(self) -> int:
        """The due point; the next one becomes due. (Once per batch sent: the constant
        schedule's next point is computed here, without a call.)"""
        point = self.due
        if self._generated:
            self.due = self._generated.pop(0)
        elif self._random is None:
            self.due = self._first + int((self._count + 1) * self._period)
        else:
            self.due = self._point_after(point)
        self._count += 1
        return point

    def backlog(self, now: int) -> int:
        """Points at or before ``now`` not taken yet (the due one included)."""
        if self.due > now:
            return 0
        if self._random is None:
            return self._constant_index(now) + 1 - self._count
        count = 1
        last = self.due
        for point in self._generated:
            if point > now:
                return count
            count += 1
            last = point
        while True:
            point = self._point_after(last)
            self._generated.append(point)
            if point > now:
                return count
            count += 1
            last = point


@dataclass
class ScheduleCounters:
    """One interval's open-loop accounting of one load process."""

    sent: int = 0  # requests sent
    late: int = 0  # requests sent more than LATE_NS after their point
    late_waiting: int = 0  # of those, the ones whose connection was not free at their point
    lateness_max_ns: int = 0
    lateness_usec: dict[int, int] = field(default_factory=dict)  # batches by lateness (µs)
    lateness_waiting_usec: dict[int, int] = field(default_factory=dict)  # of those, queued ones
    idle_ns: int = 0  # the loop's time waiting in its poll (asleep, or polling for a point)
    exact_below: int = 1 << 62  # lateness from here counted under its bucket's floor:
    bucket_floor: Callable[[int], int] = field(default=int, repr=False)  # int: every µs kept

    @classmethod
    def for_histogram(cls, params: HistogramParams) -> ScheduleCounters:
        """Counters whose lateness distribution is kept for histograms of ``params``: a
        lateness of seconds (an open loop far behind) is counted under its bucket's floor
        (:meth:`HistogramParams.bucket_floor`), which keeps the dict small."""
        return cls(exact_below=params.exact_below, bucket_floor=params.bucket_floor)

    def record_send(self, point_ns: int, now_ns: int, requests: int,
                    waited: bool = False) -> None:
        """A batch of ``requests`` intended for ``point_ns`` went out at ``now_ns``;
        ``waited``: its connection was not free at ``point_ns`` (still awaiting its previous
        reply, or connecting), so the batch queued behind it rather than behind the loop.
        (Once per batch sent: compares, not calls to max().)"""
        lateness = now_ns - point_ns
        if lateness < 0:  # noqa: PLR1730 - a call to max() per batch costs more
            lateness = 0
        self.sent += requests
        if lateness > LATE_NS:
            self.late += requests
            if waited:
                self.late_waiting += requests
        if lateness > self.lateness_max_ns:  # noqa: PLR1730
            self.lateness_max_ns = lateness
        usec = (lateness + 500) // 1000
        if usec >= self.exact_below:
            usec = self.bucket_floor(usec)
        buckets = self.lateness_usec
        buckets[usec] = buckets.get(usec, 0) + 1
        if waited:
            queued = self.lateness_waiting_usec
            queued[usec] = queued.get(usec, 0) + 1

    def add(self, sent: int, late: int, late_waiting: int, lateness_max_ns: int,
            idle_ns: int) -> None:
        """What a loop counted in its own locals since it last added (the RESP open loop
        writes :meth:`record_send` out in its hot path); the lateness distributions it wrote
        to :attr:`lateness_usec` and :attr:`lateness_waiting_usec` directly."""
        self.sent += sent
        self.late += late
        self.late_waiting += late_waiting
        if lateness_max_ns > self.lateness_max_ns:  # noqa: PLR1730
            self.lateness_max_ns = lateness_max_ns
        self.idle_ns += idle_ns

    def reset(self) -> None:
        self.sent = self.late = self.late_waiting = self.lateness_max_ns = self.idle_ns = 0
        self.lateness_usec.clear()
        self.lateness_waiting_usec.clear()


def lateness_percentile(buckets: dict[int, int], level: float) -> int | None:
    """The ``level`` percentile (0..100) of a lateness distribution in µs buckets, by the
    nearest rank; None when it is empty."""
    total = sum(buckets.values())
    if not total:
        return None
    rank = max(1, math.ceil(level / 100 * total))
    seen = 0
    for usec in sorted(buckets):
        seen += buckets[usec]
        if seen >= rank:
            return usec
    return max(buckets)  # (unreachable: the ranks cover the total)
