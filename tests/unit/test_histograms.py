"""agent.histograms and the interval data model (agent.drivers.intervals): pure, no I/O."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers.intervals import (
    IntervalData,
    LoadReport,
    OpenLoopData,
    merge_intervals,
    p99_usec,
)
from agent.drivers.kit.recorder import LoadRecorder
from agent.drivers.spec import Timeline
from agent.histograms import (
    CommandLatencies,
    HistogramParams,
    IntervalRecorder,
    add,
    clear,
    decode,
    encode,
    merge_encoded,
    record_counts,
)
from coordinator.core.reports import parse_agent_report

PARAMS = HistogramParams()


def histogram_of(values: list[int], params: HistogramParams = PARAMS) -> HdrHistogram:
    histogram = params.empty()
    for value in values:
        assert histogram.record_value(value)
    return histogram


# --- encode / decode / add -------------------------------------------------------------------


def test_encoding_is_the_standard_compressed_base64_form_and_round_trips() -> None:
    histogram = histogram_of([1, 2, 3, 150, 150, 99_999, 59_000_000])
    text = encode(histogram)
    assert isinstance(text, str)
    assert text.startswith("HISTF")  # V2 compressed cookie, base64: what every HdrHistogram reads
    back = decode(text)
    assert back.get_total_count() == 7
    assert HistogramParams.of(back) == PARAMS
    for percentile in (0.0, 50.0, 90.0, 99.0, 100.0):
        assert back.get_value_at_percentile(percentile) == histogram.get_value_at_percentile(
            percentile
        )
    assert back.get_max_value() == histogram.get_max_value()
    assert encode(back) == text


def test_an_empty_histogram_round_trips() -> None:
    back = decode(encode(PARAMS.empty()))
    assert back.get_total_count() == 0


@pytest.mark.parametrize("junk", ["", "not base64!", "SElTVEZBQUFB", "aGVsbG8gd29ybGQ="])
def test_decoding_junk_is_a_value_error(junk: str) -> None:
    with pytest.raises(ValueError, match="not an encoded HdrHistogram"):
        decode(junk)


def test_adding_sums_counts_and_keeps_extremes() -> None:
    into = histogram_of([10, 20])
    add(into, histogram_of([5, 1_000_000]))
    add(into, PARAMS.empty())  # adding nothing is harmless
    assert into.get_total_count() == 4
    assert into.get_min_value() == 5
    assert into.get_max_value() == into.get_highest_equivalent_value(1_000_000)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(1, 60_000_000), max_size=40), min_size=1, max_size=5))
def test_merging_encoded_parts_equals_recording_everything_once(parts: list[list[int]]) -> None:
    merged = merge_encoded([encode(histogram_of(part)) for part in parts], PARAMS)
    everything = histogram_of([value for part in parts for value in part])
    assert merged.get_total_count() == everything.get_total_count()
    for percentile in (50.0, 90.0, 99.0, 99.9, 100.0):
        assert merged.get_value_at_percentile(percentile) == everything.get_value_at_percentile(
            percentile
        )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.dictionaries(st.integers(1, 10**9), st.integers(1, 1000), max_size=40),
                min_size=2, max_size=4))
def test_a_cleared_histogram_encodes_as_a_new_one(intervals: list[dict[int, int]]) -> None:
    """A load process reuses one histogram, cleared after each interval, instead of making one
    per interval: each interval's encoding is a fresh histogram's, nothing carried over."""
    reused = PARAMS.empty()
    recorder = IntervalRecorder(PARAMS)
    for counts in intervals:
        fresh = PARAMS.empty()
        fresh_overflow = record_counts(fresh, counts)
        assert recorder.encoded(counts) == (encode(fresh), fresh_overflow)
        record_counts(reused, counts)
        assert encode(reused) == encode(fresh)
        clear(reused)
        assert reused.get_total_count() == 0


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.integers(0, 10**12), st.integers(1, 1000), max_size=60),
    st.sampled_from(
        [PARAMS, HistogramParams(1, 3_600_000_000, 2), HistogramParams(10, 1_000_000, 4)]
    ),
)
def test_record_counts_is_record_value_for_each_item(
    counts: dict[int, int], params: HistogramParams
) -> None:
    fast = params.empty()
    slow = params.empty()
    overflow = sum(count for value, count in counts.items() if not slow.record_value(value, count))
    assert record_counts(fast, counts) == overflow
    assert list(fast.counts) == list(slow.counts)
    assert (fast.total_count, fast.min_value, fast.max_value) == (
        slow.total_count,
        slow.min_value,
        slow.max_value,
    )
    assert encode(fast) == encode(slow)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"lowest_usec": 0, "highest_usec": 10, "significant_figures": 3}, "lowest_usec"),
        ({"lowest_usec": 5, "highest_usec": 9, "significant_figures": 3}, "highest_usec"),
        ({"lowest_usec": 1, "highest_usec": 10, "significant_figures": 6}, "significant_figures"),
        ({"lowest_usec": 1.0, "highest_usec": 10, "significant_figures": 3}, "integer"),
        ({"lowest_usec": 1, "highest_usec": 10}, "missing"),
        ({"lowest_usec": 1, "highest_usec": 10, "significant_figures": 3, "x": 1}, "unknown"),
    ],
)
def test_histogram_params_are_checked(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        HistogramParams.from_json(fields)


def test_histogram_params_round_trip() -> None:
    assert HistogramParams.from_json(PARAMS.to_json()) == PARAMS


@settings(max_examples=300, deadline=None)
@given(
    lowest=st.integers(1, 5_000),
    figures=st.integers(1, 5),
    values=st.lists(st.integers(1, 10**9), min_size=1, max_size=50),
)
def test_a_bucket_floor_is_the_histograms_own_lowest_equivalent_value(
    lowest: int, figures: int, values: list[int]
) -> None:
    """The load loops count a latency under its bucket's floor: the histogram recorded from
    the floors is the one recorded from the values, bucket for bucket."""
    params = HistogramParams(lowest, 10**9, figures)
    exact = params.empty()
    floored = params.empty()
    for value in (max(value, lowest) for value in values):
        floor = params.bucket_floor(value)
        if value < params.exact_below:
            assert floor == value
        else:
            assert floor == exact.get_lowest_equivalent_value(value) <= value
        exact.record_value(value)
        floored.record_value(floor)
    assert list(exact.counts) == list(floored.counts)


def test_the_exact_range_is_the_histograms_one_unit_buckets() -> None:
    assert (PARAMS.sub_bucket_bits, PARAMS.exact_below) == (11, 2_048)
    assert PARAMS.bucket_floor(2_047) == 2_047
    assert PARAMS.bucket_floor(2_049) == 2_048  # buckets of 2 from 2,048
    assert PARAMS.bucket_floor(1_500_123) == 1_499_136  # buckets of 1,024 from 2**20
    assert HistogramParams(10, 10**6, 2).exact_below == 256 << 3


# --- the interval recorder -------------------------------------------------------------------


def load_recorder(params: HistogramParams = PARAMS, commands: Sequence[str] = ()) -> LoadRecorder:
    return LoadRecorder(params, commands, Timeline(1_000_000_000, 1, 3))


def rolled(recorder: LoadRecorder, index: int) -> IntervalData:
    """Interval ``index`` rolled as a load process does, encoded as the agent does."""
    return recorder.roll(index, complete=True).encoded(IntervalRecorder(recorder.latencies.params))


def test_latencies_are_recorded_in_microseconds_and_below_one_count_as_one() -> None:
    recorder = load_recorder()
    recorder.latencies.record("GET", 0)
    recorder.latencies.record("GET", 999)
    recorder.latencies.record("GET", 1_000)
    recorder.latencies.record("GET", 2_999_999, count=3)
    interval = rolled(recorder, 0)
    get = decode(interval.commands["GET"].histogram)
    assert interval.commands["GET"].count == 6
    assert get.get_total_count() == 6
    assert get.get_count_at_value(1) == 3
    assert get.get_count_at_value(3_000) == 3  # 2_999_999 ns is 3_000 µs (the nearest)
    assert interval.overflow == 0


def test_values_beyond_the_range_are_counted_as_overflow_not_dropped() -> None:
    recorder = load_recorder(HistogramParams(1, 1_000_000, 3))  # up to ~1 s
    recorder.latencies.record("SET", 500_000)  # 0.5 ms
    recorder.latencies.record("SET", 70_000_000_000, count=2)  # 70 s
    interval = rolled(recorder, 3)
    assert interval.index == 3
    assert interval.overflow == 2
    assert interval.commands["SET"].count == 3  # replies: in the histogram + beyond it
    assert decode(interval.commands["SET"].histogram).get_total_count() == 1


def test_rolling_starts_an_empty_interval_and_keeps_live_buckets_valid() -> None:
    recorder = load_recorder(commands=["GET", "SET"])
    bucket = recorder.bucket("GET")
    bucket[120] = 5  # what a hot loop does
    recorder.latencies.record("SET", 80_000)
    first = rolled(recorder, 0)
    assert {name: c.count for name, c in first.commands.items()} == {"GET": 5, "SET": 1}
    assert first.count == 6
    assert bucket == {}
    assert recorder.bucket("GET") is bucket
    second = rolled(recorder, 1)
    assert second.commands == {}  # commands without replies are left out
    assert second.overflow == 0
    recorder.latencies.record("GET", 7_000)
    assert decode(rolled(recorder, 2).commands["GET"].histogram).get_max_value() == 7


# --- interval data and the report ------------------------------------------------------------


def interval(
    index: int,
    values: dict[str, list[int]],
    *,
    complete: bool = True,
    errors: dict[str, int] | None = None,
) -> IntervalData:
    commands = {
        name: CommandLatencies(encode(histogram_of(vals)), len(vals))
        for name, vals in values.items()
    }
    count = sum(len(vals) for vals in values.values())
    failures = errors or {}
    return IntervalData(
        index=index,
        phase="measure",
        complete=complete,
        commands=commands,
        requests=count + sum(failures.values()),
        errors=failures,
        bytes_sent=10 * count,
        bytes_received=20 * count,
        overflow=0,
    )


def test_merging_intervals_adds_histograms_and_sums_counters() -> None:
    a = interval(4, {"GET": [100, 200], "SET": [300]}, errors={"WRONGTYPE": 2})
    b = interval(4, {"GET": [400]}, errors={"WRONGTYPE": 1, "connection": 3})
    merged = merge_intervals([a, b], PARAMS, expected_parts=2)
    assert merged.index == 4
    assert merged.complete
    assert merged.commands["GET"].count == 3
    assert decode(merged.commands["GET"].histogram).get_total_count() == 3
    assert merged.commands["SET"] == a.commands["SET"]
    assert merged.requests == a.requests + b.requests
    assert merged.errors == {"WRONGTYPE": 3, "connection": 3}
    assert merged.bytes_sent == a.bytes_sent + b.bytes_sent
    assert merged.count == 4
    assert p99_usec(merged, PARAMS) == pytest.approx(400, rel=1e-3)


def test_a_merged_interval_is_complete_only_if_every_part_is_there_and_complete() -> None:
    a = interval(0, {"GET": [1]})
    assert not merge_intervals([a], PARAMS, expected_parts=2).complete
    cut = interval(0, {"GET": [1]}, complete=False)
    assert not merge_intervals([a, cut], PARAMS, expected_parts=2).complete
    with pytest.raises(ValueError, match="different intervals"):
        merge_intervals([a, interval(1, {})], PARAMS, expected_parts=2)


def test_open_loop_accounting_merges_summed_with_the_largest_lateness() -> None:
    lateness = PARAMS.empty()
    lateness.record_value(30)
    a = dataclasses.replace(interval(0, {"GET": [1]}), open_loop=OpenLoopData(
        sent=100, late=1, lateness_max_usec=2000, not_sent=0, lateness=encode(lateness),
        late_waiting=1, lateness_waiting=encode(lateness)))
    b = dataclasses.replace(interval(0, {"GET": [1]}), open_loop=OpenLoopData(
        sent=50, late=0, lateness_max_usec=40, not_sent=3, lateness=encode(lateness),
        not_sent_waiting=2))
    merged = merge_intervals([a, b], PARAMS, expected_parts=2).open_loop
    assert merged is not None
    assert (merged.sent, merged.late, merged.lateness_max_usec, merged.not_sent,
            merged.late_waiting, merged.not_sent_waiting) == (150, 1, 2000, 3, 1, 2)
    assert decode(merged.lateness).get_total_count() == 2
    assert decode(merged.lateness_waiting).get_total_count() == 1  # b's part: none queued
    assert merged.behind_schedule  # 3 not sent
    assert a.open_loop is not None and not a.open_loop.behind_schedule  # 1 % late: not behind
    assert OpenLoopData(sent=2000, late=21).behind_schedule  # over 1 %
    assert not OpenLoopData(sent=2000, late=20).behind_schedule
    assert not OpenLoopData(sent=200, late=10).behind_schedule  # 5 %, but only 10: jitter
    assert OpenLoopData(sent=200, late=11).behind_schedule
    # behind, but the loop itself only where requests on free connections were late or unsent
    waited = OpenLoopData(sent=2000, late=500, not_sent=40, late_waiting=490,
                          not_sent_waiting=40)
    assert waited.behind_schedule and not waited.loop_behind  # 10 own late: jitter
    assert OpenLoopData(sent=2000, late=500, late_waiting=478).loop_behind  # 22 own late
    assert OpenLoopData(sent=2000, not_sent=5, not_sent_waiting=4).loop_behind
    with pytest.raises(ValueError, match="parts of late"):
        OpenLoopData(sent=10, late=1, late_waiting=2)
    closed = merge_intervals([interval(0, {"GET": [1]})], PARAMS, expected_parts=1)
    assert closed.open_loop is None
    assert IntervalData.from_json(a.to_json()) == a


def test_the_longest_reply_gap_merges_as_a_max() -> None:
    parts = [dataclasses.replace(interval(3, {"GET": [10]}), gap_usec=gap)
             for gap in (1_500, 512_000, 0)]
    assert merge_intervals(parts, PARAMS, expected_parts=3).gap_usec == 512_000
    with pytest.raises(ValueError, match="gap_usec must be >= 0"):
        dataclasses.replace(parts[0], gap_usec=-1)


def test_p99_of_an_empty_interval_is_none() -> None:
    assert p99_usec(interval(0, {}), PARAMS) is None


def test_interval_data_round_trips_through_json() -> None:
    data = interval(2, {"GET": [5, 6]}, complete=False, errors={"OOM": 1})
    assert IntervalData.from_json(json.loads(json.dumps(data.to_json()))) == data


def test_the_coordinator_reads_the_report_the_agent_writes() -> None:
    """One schema: what a driver reports is what the coordinator's reader gives back, and
    the errors by type are those of its intervals."""
    report = LoadReport(
        driver="builtin",
        t0_ns=1_000,
        started_ns=1_010,
        start_spread_ns=5,
        stopped_ns=9_000,
        interval_ns=1_000_000_000,
        warmup_intervals=1,
        measure_intervals=2,
        histogram=PARAMS,
        processes=2,
        connections=20,
        intervals=(interval(0, {"GET": [1]}, errors={"ERR": 1}), interval(1, {"SET": [2]})),
    )
    assert LoadReport.from_text(report.to_text()) == report
    assert json.loads(report.to_text())["format"] == 1
    parsed = parse_agent_report(report.to_text(), "client1", PARAMS)
    assert parsed.errors == report.errors == {"ERR": 1}
    assert [i.index for i in parsed.intervals] == [0, 1]
    assert parsed.intervals[0].commands["GET"].count == 1
