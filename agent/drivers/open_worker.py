"""The builtin driver's open loop: requests sent on a schedule, latency from the intended time.

With ``benchmark.builtin.rate`` each connection of a load process has its own schedule of
intended send times (:mod:`agent.drivers.schedule`: the host's rate spread evenly over its
connections, one point per batch of ``pipeline`` requests, constant or Poisson, the connections
staggered over one period). Everything else is the closed loop's (:class:`Worker`): the
connections, the request mix (``RequestMix.next_batch``), the recorder, the interval grid, the
drain.

The loop (:meth:`OpenWorker.loop`) differs from the closed loop in two places:

* **when a batch goes out**: an idle connection waits in a heap keyed by its next point; the
  loop's poll timeout is the earliest of the next point, the next interval boundary and the
  next reconnection, and a connection whose point came is sent its batch. A connection whose
  replies arrive after its next point (it was still busy: a slow or stalled server) sends the
  next batch at once, late: **a busy connection queues**, as wrk2 does, it never skips.
* **what a latency is**: the reply's arrival minus the batch's **intended** send time (its
  point), not its actual send. This is the correction of coordinated omission, made once at
  the source: the histograms hold ``reply - intended`` and nothing corrects them again.

Per interval (``IntervalData.open_loop``): requests sent, requests sent more than 1 ms late,
the largest lateness, the lateness distribution, and the requests whose point had passed at the
interval's end without being sent (``not_sent``: queued behind a busy or reconnecting
connection; at the planned end these are never sent); and, of the late and the unsent, those
whose connection was not free at their point (``late_waiting``, ``not_sent_waiting``: they
waited for the server, not for the loop), unless the loop was saturated (it waited in its poll
less than :data:`SATURATED_IDLE_SHARE` of the interval: then its unread replies made its
connections look busy). The coordinator marks an agent ``behind_schedule`` from these, and
takes only the loop's own lateness as client-bound evidence (docs/drivers.md).

Timing: ``epoll_wait`` sleeps in whole milliseconds (Python rounds the timeout up: a 1.3 ms
timeout sleeps 2 ms), so the loop sleeps the whole milliseconds to the next point but one and
polls without sleeping for the rest: within 1-2 ms of the next point the load process spins,
and at a rate where the points are closer than that it spins all the time (a core held), the
price of sending on time (docs/drivers.md). That spinning is waiting, not load: its CPU time
is counted as ``busy_poll_usec``'s is (:func:`~agent.drivers.kit.spin_counter.poll_spinning`),
and the client-bound verdicts leave it out; without that, an open loop at a few thousand
requests/s showed its process at 100 % of a core and was flagged client-bound.

Each connection's ``last_reply_ns`` is set at every send, so ``gap_usec`` stays the longest wait
for a reply, not the idle time between a reply and the next point.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterable
from heapq import heappop, heappush
from typing import Any, Final

from agent.drivers.channel import Channel
from agent.drivers.intervals import OpenLoopData, ScheduleLateness
from agent.drivers.kit.counted import IntervalCounts
from agent.drivers.kit.spin_counter import poll_spinning
from agent.drivers.kit.timed import COMPLETED, STOPPED, IntervalGrid, stop_requested
from agent.drivers.resp_connection import (
    ERROR_REPLIES,
    IN,
    NO_REPLY,
    OUT,
    READ_EVENTS,
    READY,
    Connection,
)
from agent.drivers.schedule import (
    LATE_NS,
    POISSON,
    ConnectionSchedule,
    ScheduleCounters,
    connection_rate,
    stagger,
)
from agent.drivers.spec import Timeline
from agent.drivers.worker import OpenLoopPlan, Worker, WorkerConfig, bad_replies

__all__ = ["OpenWorker", "accounting_instant", "poll_timeout_s", "schedule_counts"]

SATURATED_IDLE_SHARE: Final = 0.05
"""A load process that waited in its poll less than this share of an interval was saturated
(see :func:`schedule_counts`)."""


class OpenWorker(Worker):
    """A load process running the open loop (see the module's docstring)."""

    def __init__(self, config: WorkerConfig, channel: Channel) -> None:
        super().__init__(config, channel)
        if config.open_loop is None:
            raise ValueError("an open loop needs its plan")
        self.plan: OpenLoopPlan = config.open_loop
        self.period_ns = 1e9 / connection_rate(
            self.plan.rate, self.plan.host_connections, config.pipeline
        )
        self.counters = ScheduleCounters.for_histogram(config.histogram)
        self.schedules: dict[Connection, ConnectionSchedule] = {}
        # idle connections by next point: (point, order, connection, whether it was busy then)
        self._due: list[tuple[int, int, Connection, bool]] = []
        self._order = itertools.count()  # ties in the heap: never compare connections
        self._end = 0  # the planned end (perf clock), once the load began
        self._busy_at_end: set[Connection] | None = None  # not free when the grid ended

    @classmethod
    def from_config(cls, config: dict[str, Any], channel: Channel) -> OpenWorker:
        return cls(WorkerConfig.from_json(config), channel)

    # --- the schedule -----------------------------------------------------------------------

    def begin(self, grid: IntervalGrid) -> list[int]:
        """Every connection's schedule starts now, staggered over the host's connections;
        those whose first point is now send; the instant each ``send`` returned."""
        start = time.perf_counter_ns()
        self._end = grid.end
        plan = self.plan
        for position, conn in enumerate(self.connections):
            rng = None
            if plan.arrivals == POISSON:
                rng = random.Random(self.config.seed + position)  # noqa: S311 (a load)
            first = start + stagger(plan.first_connection + position, plan.host_connections,
                                    self.period_ns)
            self.schedules[conn] = ConnectionSchedule(first, self.period_ns, rng)
        sent_at: list[int] = []
        for conn in self.connections:
            if conn.state == READY and self._send_batch(conn, start):
                sent_at.append(time.time_ns())
        return sent_at

    def _send_batch(self, conn: Connection, now: int) -> bool:
        """A connection became idle and ready (at the start, or reconnected): its batch goes
        out if its point came, otherwise it waits in the heap. Whether anything was sent."""
        schedule = self.schedules.get(conn)
        if schedule is None:  # (connected before the load began: begin() sends)
            return False
        if schedule.due > time.perf_counter_ns():
            heappush(self._due, (schedule.due, next(self._order), conn, False))
            return False
        return self._send_point(conn, schedule, waited=True)  # its point came as it connected

    def _send_point(self, conn: Connection, schedule: ConnectionSchedule,
                    waited: bool = False) -> bool:
        """Send ``conn`` the batch of its due point; its latency will count from the point.
        ``waited``: the connection was not free at the point (see ``record_send``)."""
        point = schedule.take()
        batch = conn.next_batch()  # the mix, or in a cluster the stream of its primary
        conn.batch = batch
        conn.received = 0
        conn.sent_ns = point
        now = time.perf_counter_ns()
        conn.last_reply_ns = now
        payload = batch.payload
        try:
            sent = conn.send(payload)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._fail(conn)
            return False
        self.recorder.bytes_sent += sent
        if sent < len(payload):
            self._pend(conn, payload[sent:])
        self.counters.record_send(point, now, len(batch), waited)
        return sent > 0

    # --- the loop -------------------------------------------------------------------------

    def loop(self, grid: IntervalGrid) -> str:  # noqa: PLR0912, PLR0915
        """The event loop; returns why it ended: ``completed`` or ``stopped``.

        As in the closed loop, the hot path stays in this one frame with its names in locals:
        a batch's send and its schedule accounting are written out here, not called
        (:meth:`_send_point` and ``record_send`` serve the start and reconnections; the
        accounting is kept in locals and added to :attr:`counters` before an interval is
        taken). A connection whose reply comes goes back in the heap even when its point has
        passed (it then queued: ``waited``), and the top of the loop sends every due point: one
        place for every send of the running load. Latencies and lateness from the histogram's
        inexact range on are counted under their bucket's floor
        (:meth:`~agent.histograms.HistogramParams.bucket_floor`). Measured in
        docs/architecture.md ("An open loop far behind")."""
        poll = self._poller.poll
        by_fd = self._by_fd
        control_fd = self.channel.fileno()
        perf = time.perf_counter_ns
        recorder = self.recorder
        buckets = recorder.latencies.live(self.mix.commands)  # kept current by _take's swap
        shard_buckets = self.shard_buckets
        buffer = self._buffer
        error_replies = ERROR_REPLIES
        errors_seen = error_replies[0]
        schedules = self.schedules
        due = self._due
        order = self._order
        spin = self._spin
        counters = self.counters
        lateness_usec = counters.lateness_usec  # replaced at every interval taken: re-read
        lateness_waiting_usec = counters.lateness_waiting_usec  # (the same)
        exact_below = recorder.latencies.params.exact_below  # from here: bucket_floor
        bucket_floor = recorder.latencies.params.bucket_floor
        requests = bytes_in = bytes_out = gap = idle = 0
        sent_requests = late = late_waiting = lateness_max = 0  # the schedule's, this interval
        last: tuple[int, bool] | None = None
        drain_end = grid.end + self.config.timeline.drain_ns
        rolling = self._rolling
        tick = self._wake(grid)  # the next boundary or reconnection (or the drain's end)
        wake = min(tick, due[0][0]) if due else tick
        while True:
            if rolling:  # an ended interval being packed: one slice per round
                self._roll_step()
            now = perf()
            if now >= wake:
                while due and due[0][0] <= now and last is None:  # every point come: sent
                    point, _, sender, queued = heappop(due)
                    schedule = schedules[sender]
                    if sender.state or sender.batch is not None or schedule.due != point:
                        continue  # stale: it failed meanwhile, or sent this point already
                    schedule.take()
                    outgoing = sender.next_batch()  # the mix, or a cluster primary's stream
                    sender.batch = outgoing
                    sender.received = 0
                    sender.sent_ns = point  # its latency counts from the point
                    sent_at = sender.last_reply_ns = perf()
                    payload = outgoing.payload
                    try:
                        sent = sender.send(payload)
                    except (BlockingIOError, InterruptedError):
                        sent = 0
                    except OSError:
                        self._fail(sender)
                        tick = self._wake(grid)
                        continue
                    bytes_out += sent
                    if sent < len(payload):
                        self._pend(sender, payload[sent:])
                    requests_out = outgoing.size  # ScheduleCounters.record_send, written out
                    sent_requests += requests_out
                    lateness = sent_at - point
                    if lateness > LATE_NS:
                        late += requests_out
                        if queued:
                            late_waiting += requests_out
                    if lateness > lateness_max:  # noqa: PLR1730 - a call to max() costs more
                        lateness_max = lateness
                    usec = (lateness + 500) // 1000 if lateness > 0 else 0
                    if usec >= exact_below:  # far behind: under its bucket's floor
                        usec = bucket_floor(usec)
                    lateness_usec[usec] = lateness_usec.get(usec, 0) + 1
                    if queued:
                        lateness_waiting_usec[usec] = lateness_waiting_usec.get(usec, 0) + 1
                if now >= tick or last is not None:  # draining: a batch just came, all in?
                    recorder.requests += requests
                    recorder.bytes_received += bytes_in
                    recorder.bytes_sent += bytes_out
                    recorder.note_gap(gap)
                    requests = bytes_in = bytes_out = gap = 0
                    if last is None:
                        counters.add(sent_requests, late, late_waiting, lateness_max, idle)
                        sent_requests = late = late_waiting = lateness_max = idle = 0
                        last = self._housekeeping(grid, now)
                        lateness_usec = counters.lateness_usec
                        lateness_waiting_usec = counters.lateness_waiting_usec
                        if last is not None:
                            self._drain_start()
                    if last is not None and (now >= drain_end or self._answered()):
                        self._drained(last, now)
                        return COMPLETED
                    tick = drain_end if last is not None else self._wake(grid)
                wake = min(tick, due[0][0]) if due and last is None else tick
                now = perf()
            if rolling or wake <= now:
                ready = poll(0.0)
                received_ns = perf()  # every reply of this round arrived by now
            elif timeout := poll_timeout_s(wake, now):  # sleep if nothing is ready; counted
                ready = poll(0.0)
                if not ready:
                    ready = poll(timeout)
                    idle += perf() - now
                received_ns = perf()
            else:  # the next point is too close to sleep for: poll for it (counted)
                spun = spin.total_ns
                ready, received_ns = poll_spinning(poll, wake, spin)
                idle += spin.total_ns - spun
            for fd, events in ready:
                conn = by_fd.get(fd)
                if conn is None:
                    if fd == control_fd:
                        recorder.requests += requests
                        recorder.bytes_received += bytes_in
                        recorder.bytes_sent += bytes_out
                        recorder.note_gap(gap)
                        requests = bytes_in = bytes_out = gap = 0
                        if stop_requested(self.channel):
                            counters.add(sent_requests, late, late_waiting, lateness_max, 0)
                            self._flush_rolls()
                            if last is not None:
                                self.report_interval(last[0], complete=False)
                            return STOPPED
                    continue
                if conn.state:  # not READY: connecting or authenticating
                    self._advance(conn, events)
                    wake = now  # its timer or its first point: recomputed at the top
                    tick = self._wake(grid) if last is None else tick
                    continue
                if events != IN:  # (rare: writable again, or an error or hang-up to read)
                    if events & OUT and conn.out:
                        self._flush(conn)
                    if not events & READ_EVENTS:
                        continue
                try:
                    size = conn.recv_into(buffer)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    size = 0
                if not size:
                    self._fail(conn)
                    if last is None:
                        tick = self._wake(grid)
                    wake = now
                    continue
                bytes_in += size
                first = conn.received
                batch = conn.batch
                if (not first and batch is not None and (expected := batch.replies) is not None
                        and size == len(expected) and buffer.startswith(expected)
                        and not conn.has_data()):
                    replies = None  # the whole batch, byte for byte as expected: no parsing
                    done = batch.size
                else:
                    conn.feed(buffer, 0, size)
                    replies = [*iter(conn.gets, NO_REPLY)]
                    if not replies:
                        continue
                    done = first + len(replies)
                waited = received_ns - conn.last_reply_ns
                if waited > gap:  # noqa: PLR1730
                    gap = waited
                conn.last_reply_ns = received_ns
                if batch is None:
                    self._fail(conn)
                    if last is None:
                        tick = self._wake(grid)
                    wake = now
                    continue
                requests += done - first
                latency = (received_ns - conn.sent_ns + 500) // 1000 or 1  # from the point
                if latency >= exact_below:  # an overload's: under its bucket's floor
                    latency = bucket_floor(latency)
                wanted = batch.size
                bad = None
                if replies is not None and (error_replies[0] != errors_seen
                                            or batch.checks is not None):
                    errors_seen = error_replies[0]
                    bad = bad_replies(replies, first, batch)
                if bad is None and first == 0 and done == wanted:
                    tally = batch.tally
                else:
                    tally = tuple(enumerate(self._count(conn, batch, first, done, bad)))
                for kind, count in tally:
                    if count:
                        bucket = buckets[kind]
                        bucket[latency] = bucket.get(latency, 0) + count
                if shard_buckets is not None and (answered := sum([c for _, c in tally])):
                    bucket = shard_buckets[conn.node]
                    bucket[latency] = bucket.get(latency, 0) + answered
                if done < wanted:
                    conn.received = done
                    continue
                conn.batch = None
                conn.received = 0
                if last is not None:  # draining: nothing new
                    wake = now
                    continue
                point = schedules[conn].due  # its next batch: sent at the top when it comes
                heappush(due, (point, next(order), conn, point <= received_ns))
                if point < wake:  # noqa: PLR1730 (past: the batch queued, sent at once)
                    wake = point

    # --- intervals ------------------------------------------------------------------------

    def _drain_start(self) -> None:
        """The last interval is accounted after the drain, when every connection is idle:
        which were not free is read here, as the grid ends."""
        self._busy_at_end = {conn for conn in self.connections if _busy(conn)}
        super()._drain_start()

    def _take(self, index: int, *, complete: bool, now: int | None = None,
              lateness: ScheduleLateness | None = None) -> IntervalCounts:
        """The closed loop's interval, with the schedule's accounting of it."""
        clock = time.perf_counter_ns() if now is None else now
        at = accounting_instant(clock, self._end, self.config.timeline, index)
        ended = self._busy_at_end
        self.recorder.open_loop, lateness = schedule_counts(
            self.counters,
            [(schedule, _busy(conn) if ended is None else conn in ended)
             for conn, schedule in self.schedules.items()],
            at, self.config.pipeline, self.config.timeline.interval_ns)
        return super()._take(index, complete=complete, now=now, lateness=lateness)


def _busy(conn: Connection) -> bool:
    """Not free to send: awaiting its batch's replies, or (re)connecting."""
    return conn.batch is not None or conn.state != READY


def accounting_instant(clock: int, end: int, timeline: Timeline, index: int) -> int:
    """The instant (perf clock) at which interval ``index``'s unsent points are counted: its
    end on the grid, or ``clock`` (when it is rolled) if that is earlier (a load stopped
    early). Not ``clock`` itself: the interval is rolled a little after its end, and points
    that came in between belong to the next interval (an idle connection sends them at once);
    counting them ``not_sent`` marked an open loop behind its schedule at 200 requests/s. Before
    the load began (``end`` 0): ``clock``."""
    if not end:
        return clock
    interval_end = end - (timeline.intervals - 1 - index) * timeline.interval_ns
    return min(clock, interval_end)


def schedule_counts(counters: ScheduleCounters,
                    schedules: Iterable[tuple[ConnectionSchedule, bool]],
                    at: int, pipeline: int,
                    interval_ns: int) -> tuple[OpenLoopData, ScheduleLateness]:
    """One interval of an open loop's schedule, ending at ``at`` (perf clock): the counters'
    sends and the points come by ``at`` but not sent (``pipeline`` requests each), and the
    lateness distributions (µs; the counters' own dicts, replaced by fresh ones), the counters
    reset. ``schedules``: each connection's, and whether the connection is not free (awaiting
    a reply, or connecting): its points not sent wait for it. Shared by every open loop (RESP
    and HTTP).

    What waited for a busy connection is counted apart (``late_waiting``,
    ``not_sent_waiting``, the lateness of the batches that queued) only if the loop itself
    waited, in its poll, at least :data:`SATURATED_IDLE_SHARE` of the interval
    (``interval_ns``): a saturated loop leaves its replies unread, so its connections look
    busy when the delay is its own."""
    backlog = waiting = 0
    for schedule, busy in schedules:
        points = schedule.backlog(at)
        backlog += points
        if busy:
            waiting += points
    split = counters.idle_ns >= SATURATED_IDLE_SHARE * interval_ns
    data = OpenLoopData(
        sent=counters.sent,
        late=counters.late,
        lateness_max_usec=(counters.lateness_max_ns + 500) // 1000,
        not_sent=backlog * pipeline,
        late_waiting=counters.late_waiting if split else 0,
        not_sent_waiting=waiting * pipeline if split else 0,
    )
    lateness = ScheduleLateness(counters.lateness_usec,
                                counters.lateness_waiting_usec if split else {})
    counters.lateness_usec, counters.lateness_waiting_usec = {}, {}
    counters.reset()
    return data, lateness


def poll_timeout_s(wake_ns: int, now_ns: int) -> float:
    """How long an open loop's poll may sleep before ``wake_ns``: ``epoll`` sleeps whole
    milliseconds, rounded up, so the whole milliseconds but one (a hair less, so the rounding
    cannot add one); within 1-2 ms of the wake, not at all (the loop spins)."""
    sleep_ms = (wake_ns - now_ns) // 1_000_000 - 1
    return sleep_ms / 1000 - 1e-7 if sleep_ms > 0 else 0.0
