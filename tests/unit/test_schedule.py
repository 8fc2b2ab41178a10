"""The open loop's schedule (agent/drivers/schedule.py) with a fake clock: instants are plain
integers passed in, so every case is exact."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers.open_worker import accounting_instant, schedule_counts
from agent.drivers.schedule import (
    LATE_NS,
    ConnectionSchedule,
    ScheduleCounters,
    connection_rate,
    lateness_percentile,
    stagger,
)
from agent.drivers.spec import Timeline
from agent.histograms import HistogramParams


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 (a schedule, not a secret)


def test_a_host_rate_is_spread_over_connections_and_pipelined_batches() -> None:
    assert connection_rate(10_000, 10, 1) == 1000
    assert connection_rate(10_000, 10, 4) == 250
    with pytest.raises(ValueError):
        connection_rate(0, 1, 1)


def test_constant_points_are_evenly_spaced_from_the_first() -> None:
    schedule = ConnectionSchedule(1_000, 250.0)
    assert [schedule.take() for _ in range(5)] == [1_000, 1_250, 1_500, 1_750, 2_000]
    assert schedule.due == 2_250
    assert schedule.taken == 5


def test_a_fractional_period_does_not_drift() -> None:
    schedule = ConnectionSchedule(0, 1e9 / 3)  # 3 per second: 333 333 333.3 ns
    points = [schedule.take() for _ in range(3_000_001)]
    assert points[-1] == 1_000_000 * 1_000_000_000
    assert points[3] == 1_000_000_000


def test_connections_are_staggered_over_one_period() -> None:
    offsets = [stagger(index, 4, 1000.0) for index in range(4)]
    assert offsets == [0, 250, 500, 750]


def test_the_backlog_counts_points_passed_but_not_taken() -> None:
    schedule = ConnectionSchedule(1_000, 100.0)
    assert schedule.backlog(999) == 0
    assert schedule.backlog(1_000) == 1  # the due point itself
    assert schedule.backlog(1_550) == 6  # 1000, 1100, ..., 1500
    schedule.take()
    schedule.take()
    assert schedule.backlog(1_550) == 4
    for _ in range(4):
        schedule.take()
    assert schedule.backlog(1_550) == 0


def test_a_stalled_connection_queues_its_requests_and_they_go_out_late() -> None:
    """The wrk2 policy: a point passed while the connection was busy is sent when the reply
    comes, late, and its latency still counts from the point."""
    schedule = ConnectionSchedule(0, 1_000_000.0)  # 1000 batches/s
    counters = ScheduleCounters()
    # point 0 sent on time; the server stalls 5 ms, the reply comes at 5.2 ms
    point = schedule.take()
    counters.record_send(point, 10_000, 1)
    reply_at = 5_200_000
    assert schedule.backlog(reply_at) == 5  # points 1..5 ms are queued: the not-sent gauge
    latencies = []
    now = reply_at
    while schedule.due <= now:
        point = schedule.take()
        counters.record_send(point, now, 1, waited=True)  # each behind an unanswered one
        now += 20_000  # each queued request answered in 20 µs once the server is back
        latencies.append(now - point)
    assert latencies[0] == 5_220_000 - 1_000_000  # from the intended time, not the send
    assert counters.sent == 6
    assert counters.late == 4  # 1 ms (4.2 ms late), 2 ms, 3 ms, 4 ms; 5 ms was 0.28 ms late
    assert counters.late_waiting == 4  # all of them waited for the server
    assert counters.lateness_max_ns == 4_200_000


def test_late_sends_on_a_free_connection_are_the_loops_own() -> None:
    counters = ScheduleCounters()
    counters.record_send(0, LATE_NS + 1, 3)  # its connection was free: the loop was late
    counters.record_send(0, LATE_NS + 1, 2, waited=True)
    counters.record_send(0, 10, 5, waited=True)  # waited, but not late: not counted
    assert (counters.sent, counters.late, counters.late_waiting) == (10, 5, 2)


def test_unsent_points_are_split_by_whether_their_connection_was_free() -> None:
    free = ConnectionSchedule(0, 1_000_000.0)
    awaiting = ConnectionSchedule(0, 1_000_000.0)
    counters = ScheduleCounters(idle_ns=50_000_000)  # the loop waited 5 % of the interval
    data, _ = schedule_counts(counters, [(free, False), (awaiting, True)], 2_500_000, 4,
                              10**9)
    assert (data.not_sent, data.not_sent_waiting) == (24, 12)  # 3 points each, 4 requests


def test_the_lateness_of_batches_that_queued_is_kept_apart_too() -> None:
    """Beside every batch's lateness, the lateness of those that queued behind a busy
    connection: the server's part, which the rest, the loop's own, is read without."""
    counters = ScheduleCounters(idle_ns=50_000_000)
    counters.record_send(0, 20_000, 1)  # on time enough, its connection free
    counters.record_send(0, 3_000_000, 2, waited=True)  # queued behind an unanswered request
    counters.record_send(0, 2_000_000, 1)  # late on a free connection: the loop's
    _, lateness = schedule_counts(counters, [], 5_000_000, 1, 10**9)
    assert lateness.every == {20: 1, 3000: 1, 2000: 1}  # batches, not requests
    assert lateness.waiting == {3000: 1}
    assert counters.lateness_usec == {} and counters.lateness_waiting_usec == {}
    assert counters.lateness_usec is not lateness.every  # a fresh dict for the next interval


def test_a_saturated_loop_waited_for_nothing_but_itself() -> None:
    """A loop that never waited in its poll left its replies unread: its connections looked
    busy, but the delay was its own."""
    awaiting = ConnectionSchedule(0, 1_000_000.0)
    counters = ScheduleCounters(idle_ns=49_999_999)  # just under 5 % of the interval
    counters.record_send(0, LATE_NS + 1, 3, waited=True)
    data, lateness = schedule_counts(counters, [(awaiting, True)], 2_500_000, 1, 10**9)
    assert (data.late, data.late_waiting, data.not_sent, data.not_sent_waiting) == (3, 0, 3, 0)
    assert (lateness.every, lateness.waiting) == ({1000: 1}, {})
    assert data.loop_behind
    assert counters == ScheduleCounters()  # reset for the next interval


def test_lateness_is_never_negative_and_late_means_beyond_the_threshold() -> None:
    counters = ScheduleCounters()
    counters.record_send(1_000, 900, 4)  # sent early (a spin overshoot): lateness 0
    counters.record_send(0, LATE_NS, 2)  # exactly at the threshold: not late
    counters.record_send(0, LATE_NS + 1, 3)
    assert counters.sent == 9
    assert counters.late == 3
    assert counters.lateness_max_ns == LATE_NS + 1
    assert counters.lateness_usec == {0: 1, 1000: 2}
    counters.reset()
    assert counters == ScheduleCounters()


def test_a_lateness_of_seconds_is_counted_under_its_histogram_buckets_floor() -> None:
    """An open loop far behind sends each batch with a lateness of its own: counted exactly,
    nearly every send would be a new key of the lateness dict."""
    counters = ScheduleCounters.for_histogram(HistogramParams())
    counters.record_send(0, 1_500_123_000, 1)
    counters.record_send(0, 1_500_100_000, 1)  # the same bucket (1,024 µs wide)
    counters.record_send(0, 2_047_000, 1)  # below 2,048 µs: exact
    assert counters.lateness_usec == {1_499_136: 2, 2_047: 1}
    assert counters.lateness_max_ns == 1_500_123_000  # the largest stays exact
    assert ScheduleCounters().exact_below > 10**15  # no histogram given: every µs kept


def test_counts_kept_in_a_loops_locals_add_up_as_record_send_would() -> None:
    recorded = ScheduleCounters()
    recorded.record_send(0, 10, 2)
    recorded.record_send(0, LATE_NS + 5, 3, waited=True)
    added = ScheduleCounters(lateness_max_ns=7)
    added.add(5, 3, 3, LATE_NS + 5, 0)
    added.add(0, 0, 0, 3, 11)  # a smaller largest lateness leaves the largest as it is
    assert (added.sent, added.late, added.late_waiting, added.lateness_max_ns, added.idle_ns) == (
        recorded.sent, recorded.late, recorded.late_waiting, recorded.lateness_max_ns, 11)


def test_lateness_percentiles_by_nearest_rank() -> None:
    buckets = {0: 50, 10: 49, 500: 1}
    assert lateness_percentile(buckets, 50) == 0
    assert lateness_percentile(buckets, 99) == 10
    assert lateness_percentile(buckets, 100) == 500
    assert lateness_percentile({}, 99) is None


@settings(max_examples=60, deadline=None)
@given(
    first=st.integers(0, 10**12),
    period=st.floats(1.0, 1e10),
    now_offset=st.integers(-(10**9), 10**11),
    taken=st.integers(0, 50),
)
def test_constant_backlog_matches_the_points(
    first: int, period: float, now_offset: int, taken: int
) -> None:
    schedule = ConnectionSchedule(first, period)
    for _ in range(taken):
        schedule.take()
    now = first + now_offset
    points = ConnectionSchedule(first, period)
    expected = 0
    for index in range(taken + 200_000):
        point = points.take()
        if point > now:
            break
        if index >= taken:
            expected += 1
    else:
        return  # too many points to enumerate for this example
    assert schedule.backlog(now) == expected


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), period=st.floats(1e3, 1e8), probe=st.integers(1, 400))
def test_poisson_backlog_and_take_agree(seed: int, period: float, probe: int) -> None:
    """Counting the backlog draws points ahead; taking them afterwards gives the same points."""
    counted = ConnectionSchedule(0, period, seeded(seed))
    plain = ConnectionSchedule(0, period, seeded(seed))
    now = int(probe * period)
    backlog = counted.backlog(now)
    points = [counted.take() for _ in range(backlog + 3)]
    assert points == [plain.take() for _ in range(backlog + 3)]
    assert sum(1 for point in points if point <= now) == backlog
    assert all(b > a for a, b in itertools.pairwise(points))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32), rate=st.floats(10.0, 1e6))
def test_poisson_mean_rate_is_within_statistical_bounds(seed: int, rate: float) -> None:
    """n exponential gaps of mean 1/rate: their sum has mean n/rate and sd sqrt(n)/rate; the
    count in a window is within 5 sd of the expectation (one false failure in ~3.5 million)."""
    n = 20_000
    period = 1e9 / rate
    schedule = ConnectionSchedule(0, period, seeded(seed))
    points = [schedule.take() for _ in range(n + 1)]
    span = points[-1] - points[0]
    expected = n * period
    assert abs(span - expected) <= 5 * math.sqrt(n) * period + n  # + n: ns rounding per gap
    gaps = [b - a for a, b in itertools.pairwise(points)]
    # an exponential's coefficient of variation is 1 (a constant schedule's is 0)
    mean = sum(gaps) / n
    sd = math.sqrt(sum((gap - mean) ** 2 for gap in gaps) / n)
    assert 0.9 < sd / mean < 1.1


def test_an_intervals_unsent_points_are_counted_at_its_end_not_when_it_is_rolled() -> None:
    """The loop rolls an interval a little after its end; a point that came in between is the
    next interval's (an idle connection sends it at once), not one the ending interval left
    unsent: counted then, it marked a 200 requests/s open loop behind its schedule."""
    timeline = Timeline(interval_ns=1_000_000_000, warmup_intervals=1, measure_intervals=2)
    start = 5_000_000_000
    end = start + 3 * 1_000_000_000  # the planned end: interval 2's end
    first_end = start + 1_000_000_000
    rolled = first_end + 40_000  # the roll, 40 µs after interval 0's end
    assert accounting_instant(rolled, end, timeline, 0) == first_end
    assert accounting_instant(end + 7, end, timeline, 2) == end
    assert accounting_instant(first_end - 9, end, timeline, 0) == first_end - 9  # a stop
    assert accounting_instant(123, 0, timeline, 0) == 123  # before the load began
    schedule = ConnectionSchedule(first_end + 10_000, 5_000_000.0)  # due 10 µs after the end
    counters = ScheduleCounters()
    at_end, _ = schedule_counts(counters, [(schedule, False)], accounting_instant(
        rolled, end, timeline, 0), 1, timeline.interval_ns)
    assert at_end.not_sent == 0
    when_rolled, _ = schedule_counts(counters, [(schedule, False)], rolled, 1,
                                     timeline.interval_ns)
    assert when_rolled.not_sent == 1  # what was counted before
