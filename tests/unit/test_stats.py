"""Latency statistics (core/stats.py, figures.py, histograms.py, reports.py): merging, windows,
figures, aggregation, parsing."""

from __future__ import annotations

import base64
import ctypes
import dataclasses
import json
import math
import zlib
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pytest
from hdrh.codec import ExternalHeader, PayloadHeader, ext_header_size, payload_header_size
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers.intervals import IntervalData, LoadReport
from agent.histograms import HistogramParams, percentiles
from coordinator.core.clock import ClockEstimate
from coordinator.core.errors import AgentError
from coordinator.core.figures import (
    LATENCY_FIGURES,
    PERCENTILES,
    Latency,
    Repetition,
    SpreadRecord,
)
from coordinator.core.histograms import (
    HISTOGRAM_PARAMS,
    HistogramError,
    counts,
    decode_histogram,
    encode_histogram,
    mean,
    merge,
    percentile_distribution,
)
from coordinator.core.reports import AgentReport, Interval, parse_agent_report
from coordinator.core.stats import (
    aggregate,
    common_window,
    error_rate,
    first_request_spread_ns,
    repetition_figures,
    run_span_ns,
    start_skew_ns,
    start_skew_uncertainty_ns,
)

SECOND_NS = 1_000_000_000
NO_LATENCY = Latency.model_validate(dict.fromkeys(LATENCY_FIGURES, 0))

# ---------------------------------------------------------------------------------------------
# Helpers (also used by test_results.py)


def histogram_of(values: Sequence[int], params: HistogramParams = HISTOGRAM_PARAMS) -> HdrHistogram:
    histogram = params.empty()
    for value in values:
        assert histogram.record_value(value), value
    return histogram


def encoded(values: Sequence[int], params: HistogramParams = HISTOGRAM_PARAMS) -> str:
    return encode_histogram(histogram_of(values, params))


def command(values: Sequence[int], overflow: int = 0) -> dict[str, Any]:
    return {"histogram": encoded(values), "count": len(values) + overflow}


def interval(
    index: int,
    phase: str = "measure",
    *,
    complete: bool = True,
    commands: dict[str, dict[str, Any]] | None = None,
    requests: int | None = None,
    errors: dict[str, int] | None = None,
    overflow: int = 0,
    gap_usec: int = 0,
) -> dict[str, Any]:
    commands = {"GET": command([100, 200])} if commands is None else commands
    count = sum(c["count"] for c in commands.values())
    errors = errors or {}
    return {
        "index": index,
        "phase": phase,
        "complete": complete,
        "commands": commands,
        "requests": count + sum(errors.values()) if requests is None else requests,
        "errors": errors,
        "bytes_sent": 10 * count,
        "bytes_received": 20 * count,
        "overflow": overflow,
        "gap_usec": gap_usec,
        "open_loop": None,
        "redirects": {},
        "shards": {},
    }


def report_data(intervals: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """A report as the agent writes it (its own schema, ``LoadReport``), then ``overrides``."""
    written = LoadReport(
        driver="builtin",
        t0_ns=5 * SECOND_NS,
        started_ns=5 * SECOND_NS + 1000,
        start_spread_ns=200,
        stopped_ns=5 * SECOND_NS + len(intervals) * SECOND_NS,
        interval_ns=SECOND_NS,
        warmup_intervals=sum(1 for i in intervals if i["phase"] == "warmup"),
        measure_intervals=sum(1 for i in intervals if i["phase"] == "measure"),
        histogram=HISTOGRAM_PARAMS,
        processes=2,
        connections=8,
        intervals=tuple(IntervalData.from_json(item) for item in intervals),
    )
    data: dict[str, Any] = written.to_json()
    data.update(overrides)
    return data


def report(host: str, intervals: list[dict[str, Any]], **overrides: Any) -> AgentReport:
    return parse_agent_report(json.dumps(report_data(intervals, **overrides)), host)


def bare_report(host: str, intervals: Sequence[tuple[int, str, bool]]) -> AgentReport:
    """A report without histograms: (index, phase, complete) per interval."""
    return AgentReport(
        host=host,
        driver="builtin",
        t0_ns=0,
        started_ns=0,
        start_spread_ns=0,
        stopped_ns=0,
        interval_ns=SECOND_NS,
        warmup_intervals=0,
        measure_intervals=0,
        params=HISTOGRAM_PARAMS,
        processes=1,
        connections=1,
        intervals=tuple(
            Interval(
                index=index,
                phase="measure" if phase == "measure" else "warmup",
                complete=complete,
                commands={},
                requests=0,
                errors={},
                bytes_sent=0,
                bytes_received=0,
                overflow=0,
            )
            for index, phase, complete in intervals
        ),
        errors={},
    )


def same_histogram(a: HdrHistogram, b: HdrHistogram) -> bool:
    return (
        counts(a) == counts(b)
        and a.get_total_count() == b.get_total_count()
        and a.get_max_value() == b.get_max_value()
        and a.get_min_value() == b.get_min_value()
    )


# Latencies from 1 µs to 60 s, dense where real ones are (µs..ms) and sparse up to the top.
latencies = st.one_of(
    st.integers(min_value=1, max_value=5_000),
    st.integers(min_value=1, max_value=200_000),
    st.integers(min_value=1, max_value=60_000_000),
)
value_lists = st.lists(latencies, max_size=200)
LEVELS = [0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0]


# ---------------------------------------------------------------------------------------------
# Merging


@given(value_lists, value_lists)
def test_merge_is_commutative(a: list[int], b: list[int]) -> None:
    ha, hb = histogram_of(a), histogram_of(b)
    assert same_histogram(merge([ha, hb]), merge([hb, ha]))


@given(value_lists, value_lists, value_lists)
@settings(max_examples=60)
def test_merge_is_associative(a: list[int], b: list[int], c: list[int]) -> None:
    ha, hb, hc = histogram_of(a), histogram_of(b), histogram_of(c)
    left = merge([merge([ha, hb]), hc])
    right = merge([ha, merge([hb, hc])])
    flat = merge([ha, hb, hc])
    assert same_histogram(left, right)
    assert same_histogram(left, flat)


@given(st.lists(value_lists, max_size=8))
def test_merged_count_is_the_sum_of_the_parts(parts: list[list[int]]) -> None:
    histograms = [histogram_of(part) for part in parts]
    merged = merge(histograms)
    assert merged.get_total_count() == sum(h.get_total_count() for h in histograms)
    assert merged.get_total_count() == sum(len(part) for part in parts)


@given(st.lists(value_lists, min_size=1, max_size=6))
@settings(max_examples=60)
def test_percentiles_of_a_merge_equal_those_of_one_histogram_fed_every_value(
    parts: list[list[int]],
) -> None:
    merged = merge(histogram_of(part) for part in parts)
    single = histogram_of([value for part in parts for value in part])
    assert same_histogram(merged, single)
    assert percentiles(merged, LEVELS) == percentiles(single, LEVELS)
    assert Latency.of(merged) == Latency.of(single)


@given(st.lists(value_lists, min_size=1, max_size=4))
@settings(max_examples=30)
def test_merging_decoded_histograms_equals_merging_the_originals(parts: list[list[int]]) -> None:
    originals = [histogram_of(part) for part in parts]
    decoded = [decode_histogram(encode_histogram(h)) for h in originals]
    assert same_histogram(merge(decoded), merge(originals))
    assert Latency.of(merge(decoded)) == Latency.of(merge(originals))


def test_merge_leaves_its_inputs_untouched() -> None:
    a, b = histogram_of([5, 10]), histogram_of([1_000])
    before = counts(a), counts(b)
    merge([a, b])
    assert (counts(a), counts(b)) == before
    assert a.get_total_count() == 2 and b.get_total_count() == 1


def test_merge_of_nothing_is_an_empty_histogram_with_the_fixed_parameters() -> None:
    merged = merge([])
    assert merged.get_total_count() == 0
    assert HistogramParams.of(merged) == HISTOGRAM_PARAMS
    assert Latency.of(merged) == NO_LATENCY


def test_merge_keeps_the_true_minimum() -> None:
    merged = merge([histogram_of([]), histogram_of([700, 900]), histogram_of([300])])
    assert merged.get_min_value() == 300


def test_merge_refuses_histograms_of_other_parameters() -> None:
    other = HistogramParams(1, 3_600_000_000, 3)
    with pytest.raises(ValueError, match="cannot merge"):
        merge([histogram_of([5]), histogram_of([5], other)])


@given(value_lists)
@settings(max_examples=100)
def test_the_mean_agrees_with_hdrh_and_percentiles_take_the_rank_java_takes(
    values: list[int],
) -> None:
    histogram = histogram_of(values)
    assert mean(histogram) == histogram.get_mean_value()
    ranked = sorted(values)
    expected = dict.fromkeys(LEVELS, 0)
    for level in LEVELS if values else []:
        value = ranked[max(1, math.ceil(Fraction(repr(level)) * len(values) / 100)) - 1]
        if level:
            expected[level] = histogram.get_highest_equivalent_value(value)
        else:
            expected[level] = histogram.get_lowest_equivalent_value(value)
    assert percentiles(histogram, LEVELS) == expected


def test_histogram_parameters_are_checked() -> None:
    with pytest.raises(ValueError):
        HistogramParams(0, 100, 3)
    with pytest.raises(ValueError):
        HistogramParams(10, 15, 3)
    with pytest.raises(ValueError):
        HistogramParams(1, 100, 6)


# ---------------------------------------------------------------------------------------------
# Decoding


@given(value_lists)
@settings(max_examples=50)
def test_encoding_round_trips(values: list[int]) -> None:
    histogram = histogram_of(values)
    assert same_histogram(decode_histogram(encode_histogram(histogram)), histogram)


def retagged(histogram: HdrHistogram, **header: int) -> str:
    """``histogram`` encoded, with payload header fields replaced (a lying agent)."""
    raw = base64.b64decode(histogram.encode())
    data = zlib.decompress(raw[ext_header_size:])
    payload = PayloadHeader.from_buffer_copy(data)
    for name, value in header.items():
        setattr(payload, name, value)
    body = ctypes.string_at(ctypes.addressof(payload), payload_header_size)
    compressed = zlib.compress(body + data[payload_header_size:])
    outer = ExternalHeader.from_buffer_copy(raw)
    outer.length = len(compressed)
    head = ctypes.string_at(ctypes.addressof(outer), ext_header_size)
    return base64.b64encode(head + compressed).decode()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not a compressed base64 HdrHistogram"),
        ("not base64!", "not a compressed base64 HdrHistogram"),
        (base64.b64encode(b"x" * 40).decode(), "not a compressed base64 HdrHistogram"),
        (encoded([5], HistogramParams(1, 3_600_000_000, 3)), "expected 1..60000000 µs"),
        (encoded([5], HistogramParams(1, 60_000_000, 2)), "2 significant figures"),
        (encoded([5], HistogramParams(1000, 60_000_000_000, 3)), "1000..60000000000 µs"),
        # Header claims our parameters, counts run past the array they allow.
        (
            retagged(histogram_of([3_000_000_000], HistogramParams(1, 3_600_000_000, 3)),
                     highest_trackable_value=60_000_000),
            "corrupt HdrHistogram counts",
        ),
    ],
)
def test_decode_refuses_junk_and_other_parameters(text: str, reason: str) -> None:
    with pytest.raises(HistogramError, match=reason):
        decode_histogram(text)


def test_decode_refuses_a_huge_precision_before_allocating_it() -> None:
    lying = retagged(histogram_of([5]), significant_figures=5)
    with pytest.raises(HistogramError, match="5 significant figures"):
        decode_histogram(lying)


# ---------------------------------------------------------------------------------------------
# Load reports


def test_a_valid_report_is_parsed_with_its_histograms_decoded() -> None:
    parsed = report(
        "client1",
        [
            interval(0, "warmup"),
            interval(
                1,
                commands={"GET": command([100, 300]), "SET": command([50], overflow=1)},
                errors={"WRONGTYPE": 2},
                overflow=1,
            ),
        ],
    )
    assert parsed.host == "client1"
    assert parsed.interval_s == 1.0
    assert [i.index for i in parsed.intervals] == [0, 1]
    second = parsed.interval(1)
    assert second is not None and second.usable
    assert second.count == 4
    assert second.commands["GET"].histogram().get_total_count() == 2
    assert second.commands["GET"].recorded == 2
    assert (second.commands["SET"].count, second.commands["SET"].recorded) == (2, 1)
    assert second.errors == {"WRONGTYPE": 2}
    assert parsed.errors == {"WRONGTYPE": 2}
    assert parsed.interval(7) is None


def test_intervals_are_sorted_by_index() -> None:
    parsed = report("c", [interval(2), interval(0, "warmup"), interval(1)])
    assert [i.index for i in parsed.intervals] == [0, 1, 2]


def _mutate(path: str, value: Any) -> str:
    data = report_data([interval(0, "warmup"), interval(1)])
    target: Any = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is _DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return json.dumps(data)


_DELETE = object()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        pytest.param("[" * 100_000, "not JSON (maximum recursion depth", id="nested-too-deep"),
        ("[1, 2]", "expected an object, got [1, 2]"),
        (_mutate("format", 2), "format 2 is not one this coordinator reads"),
        (_mutate("driver", _DELETE), "driver: missing"),
        (_mutate("surprise", 1), "surprise: unknown field"),
        (_mutate("interval_ns", 0), "interval_ns must be > 0, got 0"),
        (_mutate("processes", True), "processes: expected an integer, got True"),
        (_mutate("intervals.1.phase", "cooldown"), "intervals.1: phase 'cooldown' is not one of"),
        (
            _mutate("intervals.1.requests", "12"),
            "intervals.1.requests: expected an integer, got '12'",
        ),
        (
            _mutate("intervals.1.commands.GET.count", -1),
            "intervals.1: commands.GET.count must be >= 0, got -1",
        ),
        (
            _mutate("intervals.1.errors", {"WRONGTYPE": -2}),
            "intervals.1: errors.WRONGTYPE must be >= 0, got -2",
        ),
        # Units: a report in nanoseconds, or another range or precision.
        (
            _mutate("histogram.highest_usec", 60_000_000_000),
            "declared as 1..60000000000 µs, 3 significant figures; coord fixes",
        ),
        (_mutate("histogram.significant_figures", 2), "2 significant figures; coord fixes"),
        (_mutate("histogram.lowest_usec", 1000), "declared as 1000..60000000 µs"),
        # Declared right, but one histogram was made otherwise.
        (
            _mutate(
                "intervals.1.commands.GET.histogram",
                encoded([5], HistogramParams(1, 60_000_000, 2)),
            ),
            "intervals.1.commands.GET.histogram: histogram of 1..60000000 µs, 2 significant",
        ),
        (_mutate("intervals.1.commands.GET.histogram", "AAAA"), "not a compressed base64"),
        (
            _mutate("intervals.1.commands.GET.count", 1),
            "intervals.1.commands.GET.count: 1 is below the 2 values in its histogram",
        ),
        (_mutate("intervals.1.index", 0), "interval index 0 appears twice"),
    ],
)
def test_report_parsing_refuses_bad_reports_naming_the_host(text: str, reason: str) -> None:
    with pytest.raises(AgentError) as caught:
        parse_agent_report(text, "client7")
    message = str(caught.value)
    assert message.startswith("client7: load report refused: ")
    assert reason in message
    assert "\n" not in message
    assert caught.value.host == "client7"


def test_report_parsing_uses_the_expected_parameters_given() -> None:
    params = HistogramParams(1, 3_600_000_000, 2)
    data = report_data(
        [{**interval(0), "commands": {"GET": {"histogram": encoded([7], params), "count": 1}}}],
        histogram={"lowest_usec": 1, "highest_usec": 3_600_000_000, "significant_figures": 2},
    )
    parsed = parse_agent_report(json.dumps(data), "c", params)
    assert parsed.params == params
    with pytest.raises(AgentError):
        parse_agent_report(json.dumps(data), "c")


# ---------------------------------------------------------------------------------------------
# Common window


def measure(first: int, last: int) -> list[tuple[int, str, bool]]:
    return [(index, "measure", True) for index in range(first, last + 1)]


def test_window_of_agents_starting_and_stopping_at_different_intervals() -> None:
    a = bare_report("a", [(0, "warmup", True), (1, "warmup", True), *measure(2, 9)])
    b = bare_report("b", [(i, "warmup", True) for i in range(4)] + measure(4, 12))
    c = bare_report("c", [(1, "warmup", True), *measure(2, 8), (9, "measure", False)])
    assert common_window([a, b, c]) == [4, 5, 6, 7, 8]


def test_window_leaves_out_incomplete_warmup_and_missing_intervals() -> None:
    a = bare_report("a", [*measure(0, 3), (4, "measure", False), *measure(5, 9)])
    b = bare_report("b", [*measure(0, 5), (6, "warmup", True), *measure(7, 9)])
    c = bare_report("c", [*measure(0, 7), *measure(9, 9)])  # interval 8 never arrived
    assert common_window([a, b, c]) == [0, 1, 2, 3, 5, 7, 9]


def test_window_is_empty_without_overlap_or_reports() -> None:
    assert common_window([bare_report("a", measure(0, 3)), bare_report("b", measure(4, 6))]) == []
    assert common_window([bare_report("a", [(0, "warmup", True)])]) == []
    assert common_window([]) == []


def test_window_refuses_agents_with_different_interval_lengths() -> None:
    a = bare_report("a", measure(0, 3))
    b = dataclasses.replace(bare_report("b", measure(0, 3)), interval_ns=SECOND_NS // 2)
    with pytest.raises(ValueError, match="different interval lengths"):
        common_window([a, b])


agent_series = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=15),
        st.sampled_from(["warmup", "measure"]),
        st.booleans(),
    ),
    max_size=16,
    unique_by=lambda item: item[0],
)


@given(st.lists(agent_series, min_size=1, max_size=5))
def test_window_is_exactly_the_intervals_every_agent_measured_completely(
    series: list[list[tuple[int, str, bool]]],
) -> None:
    reports = [bare_report(f"h{n}", intervals) for n, intervals in enumerate(series)]
    window = common_window(reports)
    assert window == sorted(window)
    for index in range(16):
        everyone = all(
            (i := r.interval(index)) is not None and i.phase == "measure" and i.complete
            for r in reports
        )
        assert (index in window) == everyone


# ---------------------------------------------------------------------------------------------
# One repetition's figures


def two_agents() -> list[AgentReport]:
    a = report(
        "a",
        [
            interval(0, "warmup", commands={"GET": command([9_000] * 5)}, errors={"OOM": 9}),
            interval(1, commands={"GET": command([100] * 6), "SET": command([200] * 2)},
                     errors={"WRONGTYPE": 1}),
            interval(2, commands={"GET": command([110] * 6), "SET": command([210] * 2)}),
            interval(3, commands={"GET": command([120] * 4)}, complete=False),
        ],
    )
    b = report(
        "b",
        [
            interval(1, "warmup"),
            interval(2, commands={"GET": command([300] * 3), "SET": command([400], overflow=1)},
                     errors={"connection": 2, "WRONGTYPE": 1}, overflow=1),
            interval(3, commands={"GET": command([5_000])}),
        ],
    )
    return [a, b]


def test_repetition_figures_merge_agents_and_commands_in_the_window() -> None:
    reports = two_agents()
    window = common_window(reports)
    assert window == [2]
    figures = repetition_figures(reports, window)
    assert (figures.window.first, figures.window.last, figures.window.seconds) == (2, 2, 1.0)
    # a: 6 GET + 2 SET; b: 3 GET + 2 SET (one of them overflowed).
    assert figures.count == 13
    assert figures.ops_per_sec == 13.0
    assert figures.errors == {"WRONGTYPE": 1, "connection": 2}  # warm-up OOM not counted
    assert figures.requests == 8 + 5 + 3
    assert figures.error_rate == pytest.approx(3 / 16)
    assert figures.overflow == 1
    assert figures.bytes_sent == 10 * 13
    # the overflowed reply is not in the histogram
    assert decode_histogram(figures.histogram).get_total_count() == 12
    assert figures.latency_usec.max == 400
    assert set(figures.commands) == {"GET", "SET"}
    assert figures.commands["GET"].count == 9
    assert figures.commands["SET"].count == 4
    assert figures.commands["SET"].latency_usec.p50 == 210
    assert figures.commands["GET"].latency_usec.max == 300
    assert [agent.host for agent in figures.agents] == ["a", "b"]
    a, b = figures.agents
    assert (a.count, b.count) == (8, 5)
    assert (a.ops_per_sec, b.ops_per_sec) == (8.0, 5.0)
    assert a.errors == {} and b.errors == {"WRONGTYPE": 1, "connection": 2}
    assert a.latency_usec.p50 == 110
    assert sum(agent.count for agent in figures.agents) == figures.count
    # Every reported interval is kept in the series, flagged in or out of the window.
    assert [(i.index, i.in_window) for i in a.intervals] == [
        (0, False), (1, False), (2, True), (3, False)
    ]
    assert a.intervals[0].p99_usec == 9_007  # top of 9000's bucket
    assert a.intervals[0].errors == {"OOM": 9}
    assert a.intervals[1].ops_per_sec == 8.0
    # Interval histograms travel encoded: commands merged, or the command's own when alone.
    assert decode_histogram(a.intervals[1].histogram).get_total_count() == 8
    assert a.intervals[0].histogram == reports[0].intervals[0].commands["GET"].encoded
    assert b.intervals[-1].p99_usec == 5_003  # top of 5000's bucket


def test_percentiles_come_from_the_merge_not_from_averaging_agents() -> None:
    fast = report("fast", [interval(0, commands={"GET": command([100] * 990)})])
    slow = report("slow", [interval(0, commands={"GET": command([50_000] * 10)})])
    figures = repetition_figures([fast, slow], [0])
    assert figures.latency_usec.p99 == 100
    assert figures.latency_usec.p999 == 50_015  # top of 50000's bucket
    assert [a.latency_usec.p99 for a in figures.agents] == [100, 50_015]
    single = histogram_of([100] * 990 + [50_000] * 10)
    assert Latency.of(decode_histogram(figures.histogram)) == Latency.of(single)


def test_a_longer_window_divides_by_its_length() -> None:
    reports = [report("a", [interval(i, commands={"GET": command([10] * 4)}) for i in range(5)])]
    figures = repetition_figures(reports, [1, 2, 3])
    assert figures.count == 12
    assert figures.window.seconds == 3.0
    assert figures.ops_per_sec == 4.0


def test_an_empty_window_gives_zero_figures() -> None:
    figures = repetition_figures(two_agents(), [])
    assert (figures.count, figures.ops_per_sec, figures.window.seconds) == (0, 0.0, 0.0)
    assert figures.latency_usec == NO_LATENCY
    assert all(not i.in_window for agent in figures.agents for i in agent.intervals)


def test_figures_refuse_a_window_with_an_unusable_interval() -> None:
    with pytest.raises(ValueError, match="a: interval 3 is not a complete measure interval"):
        repetition_figures(two_agents(), [2, 3])
    with pytest.raises(ValueError, match="b: interval 1"):
        repetition_figures(two_agents(), [1])


def test_error_rate() -> None:
    assert error_rate(0, 0) == 0.0
    assert error_rate(3, 0) == 1.0
    assert error_rate(1, 4) == 0.25
    assert error_rate(9, 4) == 1.0


def test_start_skew_moves_starts_to_the_coordinator_clock() -> None:
    a = dataclasses.replace(bare_report("a", []), started_ns=1_000_000, start_spread_ns=300)
    b = dataclasses.replace(bare_report("b", []), started_ns=5_000_500, start_spread_ns=100)
    clocks = {
        "a": ClockEstimate(offset_ns=0, uncertainty_ns=1, rtt_ns=2, samples=1),
        "b": ClockEstimate(offset_ns=4_000_000, uncertainty_ns=1, rtt_ns=2, samples=1),
    }
    # In the coordinator's clock: a starts at 1_000_000..1_000_300, b at 1_000_500..1_000_600.
    assert start_skew_ns([a, b], clocks) == 600
    assert start_skew_ns([], clocks) == 0
    with pytest.raises(ValueError, match="no clock estimate for c"):
        start_skew_ns([bare_report("c", [])], clocks)


# ---------------------------------------------------------------------------------------------
# Across repetitions


def repetition(ops: float, p99: int, rate: float = 0.0) -> Repetition:
    base = repetition_figures([report("a", [interval(0)])], [0])
    latency = Latency.model_validate(
        {**dict.fromkeys(PERCENTILES, p99), "p50": p99 // 2, "max": p99, "mean": p99 / 3}
    )
    return base.model_copy(update={"ops_per_sec": ops, "latency_usec": latency,
                                   "error_rate": rate})


def test_aggregate_takes_median_min_max_and_cv_of_each_figure() -> None:
    summary = aggregate([repetition(20.0, 300), repetition(10.0, 100), repetition(30.0, 200)])
    assert summary.repetitions == 3
    assert (summary.ops_per_sec.median, summary.ops_per_sec.min, summary.ops_per_sec.max) == (
        20.0, 10.0, 30.0
    )
    assert summary.ops_per_sec.cv == pytest.approx(0.5)  # stdev 10 / mean 20
    assert summary.latency_usec.p99.median == 200.0
    assert summary.latency_usec.p50.median == 100.0
    assert summary.latency_usec.mean.median == pytest.approx(200 / 3)
    assert summary.error_rate.median == 0.0
    assert summary.error_rate.cv is None  # zero mean


def test_aggregate_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    summary = aggregate([repetition(ops, 100) for ops in (1.0, 2.0, 3.0, 10.0)])
    assert summary.ops_per_sec.median == 2.5
    assert (summary.ops_per_sec.min, summary.ops_per_sec.max) == (1.0, 10.0)


def test_aggregate_of_one_repetition_has_no_cv() -> None:
    summary = aggregate([repetition(5.0, 100, 0.5)])
    assert summary.ops_per_sec == SpreadRecord.of([5.0])
    assert summary.ops_per_sec.cv is None
    assert summary.error_rate.median == 0.5


def test_aggregate_needs_repetitions() -> None:
    with pytest.raises(ValueError):
        aggregate([])


@given(st.lists(st.floats(min_value=0, max_value=1e9), min_size=1, max_size=20))
def test_spread_is_ordered_and_cv_never_negative(values: list[float]) -> None:
    result = SpreadRecord.of(values)
    assert result.min <= result.median <= result.max
    assert result.cv is None or result.cv >= 0
    if len(set(values)) == 1 and len(values) > 1 and values[0] > 0:
        assert result.cv == 0.0


# ---------------------------------------------------------------------------------------------
# .hgrm


def test_percentile_distribution_is_standard_hgrm_in_milliseconds() -> None:
    text = percentile_distribution(histogram_of([1_500] * 9 + [20_000]))
    lines = text.splitlines()
    assert lines[0].split() == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    first = lines[2].split()
    assert first[0] == "1.500"  # 1500 µs
    assert float(first[1]) == 0.0
    last_row = [line for line in lines if line and not line.startswith("#")][-1].split()
    assert last_row[0] == "20.015" and float(last_row[1]) == 1.0 and last_row[2] == "10"
    footer = next(line for line in lines if line.startswith("#[Mean"))
    mean_ms = float(footer.split("=")[1].split(",")[0])
    stddev_ms = float(footer.split("=")[2].rstrip("]"))
    assert mean_ms == pytest.approx(3.3515, abs=0.001)
    assert stddev_ms == pytest.approx(5.55, abs=0.01)  # ms, not µs
    assert "#[Max     =       20.015" in text


def test_percentile_distribution_of_an_empty_histogram() -> None:
    text = percentile_distribution(merge([]))
    assert text.splitlines()[0].split()[0] == "Value"
    assert "#[Mean    =        0.000, StdDeviation   =        0.000]" in text


def test_the_stall_series_shows_an_empty_interval_as_null_not_as_zero() -> None:
    """A 500 ms stall in 100 ms intervals: the emptied interval has no percentile at all (0
    would read as fast), its gap still shows the stall, and the interval where the stall ends
    carries it in its max."""
    parsed = report("a", [
        interval(0, commands={"GET": command([100] * 99 + [900])}, gap_usec=1_000),
        interval(1, commands={}, gap_usec=300_000),
        interval(2, commands={"GET": command([500_000, 120])}, gap_usec=500_100),
    ])
    (agent,) = repetition_figures([parsed], [0, 1, 2]).agents
    before, stalled, after = agent.intervals
    assert (stalled.count, stalled.p99_usec, stalled.p999_usec, stalled.max_usec) == (
        0, None, None, None)
    assert stalled.gap_usec == 300_000
    assert (before.p99_usec, before.p999_usec, before.max_usec) == (100, 900, 900)
    assert after.max_usec == 500_223  # top of 500000's bucket
    assert agent.gap_usec == 500_100


def test_open_loop_figures_per_interval_and_per_agent() -> None:
    """The achieved rate is what was sent in the window; one interval behind its schedule
    makes the agent behind; a closed loop leaves every open-loop figure null."""
    def open_interval(index: int, sent: int, late: int, not_sent: int,
                      waiting: int = 0) -> dict[str, Any]:
        data = interval(index)
        data["open_loop"] = {"sent": sent, "late": late, "lateness_max_usec": 1500 * late,
                             "not_sent": not_sent, "lateness": "", "late_waiting": 0,
                             "not_sent_waiting": waiting, "lateness_waiting": ""}
        return data

    parsed = report("a", [open_interval(0, 1000, 0, 0), open_interval(1, 990, 5, 10),
                          open_interval(2, 990, 5, 10, waiting=10)])
    (agent,) = repetition_figures([parsed], [0, 1, 2]).agents
    kept, behind, waited = agent.intervals
    assert (kept.sent, kept.late, kept.not_sent, kept.behind_schedule) == (1000, 0, 0, False)
    assert (behind.sent, behind.lateness_max_usec, behind.behind_schedule) == (990, 7500, True)
    assert (behind.late_waiting, behind.not_sent_waiting, behind.loop_behind) == (0, 0, True)
    # the same, but its unsent requests were waiting for the server: the loop was not behind
    assert (waited.behind_schedule, waited.not_sent_waiting, waited.loop_behind) == (
        True, 10, False)
    assert agent.sent_per_sec == pytest.approx(2980 / 3)
    assert agent.behind_schedule is True
    (on_time,) = repetition_figures([parsed], [0]).agents
    assert on_time.behind_schedule is False
    (closed,) = repetition_figures([report("b", [interval(0)])], [0]).agents
    assert closed.sent_per_sec is None and closed.behind_schedule is None
    assert closed.intervals[0].sent is None and closed.intervals[0].behind_schedule is None
    assert closed.intervals[0].loop_behind is None


@given(
    starts=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**7)), min_size=1,
                    max_size=5),
    clock_errors=st.lists(st.tuples(st.integers(0, 10**6), st.floats(-1, 1)), min_size=5,
                          max_size=5),
)
def test_the_true_skew_is_within_the_reported_uncertainty(
    starts: list[tuple[int, int]], clock_errors: list[tuple[int, float]]
) -> None:
    # Every agent's clock reads the coordinator's exactly (true offset 0); each estimate is off
    # by at most its uncertainty. The skew computed with those estimates is within the
    # reported uncertainty of the one computed with the true offsets.
    reports = [
        dataclasses.replace(bare_report(f"h{i}", []), started_ns=start, start_spread_ns=spread)
        for i, (start, spread) in enumerate(starts)
    ]
    estimates = {
        f"h{i}": ClockEstimate(offset_ns=int(uncertainty * share), uncertainty_ns=uncertainty,
                               rtt_ns=2 * uncertainty, samples=1)
        for i, (uncertainty, share) in enumerate(clock_errors)
    }
    exact = {host: ClockEstimate(0, 0, 0, 1) for host in estimates}
    true_skew = start_skew_ns(reports, exact)
    bound = start_skew_uncertainty_ns(reports, estimates)
    assert abs(start_skew_ns(reports, estimates) - true_skew) <= bound


def test_the_skew_uncertainty_adds_the_two_largest_offset_uncertainties() -> None:
    # The largest alone is no bound: a at +u_a, b at -u_b puts the error at u_a + u_b.
    reports = [bare_report(host, []) for host in ("a", "b", "c")]
    clocks = {host: ClockEstimate(0, u, 2 * u, 1)
              for host, u in (("a", 70_000), ("b", 90_000), ("c", 10_000))}
    assert start_skew_uncertainty_ns(reports, clocks) == 160_000
    assert start_skew_uncertainty_ns(reports[:1], clocks) == 0  # one clock: no conversion error
    with pytest.raises(ValueError, match="no clock estimate for d"):
        start_skew_uncertainty_ns([bare_report("d", [])], clocks)


def test_the_first_request_spread_is_the_widest_agents() -> None:
    reports = [dataclasses.replace(bare_report(host, []), first_request_spread_ns=spread)
               for host, spread in (("a", 3_000), ("b", 5_000))]
    assert first_request_spread_ns(reports) == 5_000
    assert first_request_spread_ns([]) == 0
    figures = repetition_figures(
        [report("a", [interval(0)])], [0], start_skew_ns=1_500,
        start_skew_uncertainty_ns=120_000, first_request_spread_ns=4_000)
    assert (figures.start_skew_usec, figures.start_skew_uncertainty_usec,
            figures.first_request_spread_usec) == (1.5, 120.0, 4.0)


# ---------------------------------------------------------------------------------------------
# One-window drivers (an external tool's whole run is the one measure interval)


def one_window(host: str, gets: int, window_ns: int, started_ns: int = 0) -> AgentReport:
    measured = interval(1, commands={"GET": command([100] * gets)})
    return report(host, [interval(0, "warmup"), measured], window_ns=window_ns,
                  **({"started_ns": started_ns} if started_ns else {}))


def test_a_one_window_driver_divides_each_agents_count_by_its_own_run() -> None:
    # a's tool ran 2 s, b's 4 s, though the timeline's interval (benchmark.duration) is 1 s.
    a, b = one_window("a", 8, 2 * SECOND_NS), one_window("b", 6, 4 * SECOND_NS)
    figures = repetition_figures([a, b], common_window([a, b]), run_span_ns=4 * SECOND_NS)
    assert [(x.ops_per_sec, x.window_seconds) for x in figures.agents] == [(4.0, 2.0), (1.5, 4.0)]
    assert figures.ops_per_sec == 4.0 + 1.5  # the sum of each client's own rate
    assert figures.commands["GET"].ops_per_sec == 5.5
    assert figures.count == 14
    assert figures.window.seconds == 4.0  # the union span of the runs
    assert figures.agents[0].intervals[1].ops_per_sec == 4.0
    assert figures.agents[0].intervals[0].ops_per_sec == 2.0  # warm-up: the grid's interval


def test_interval_drivers_keep_the_grid_and_no_own_run() -> None:
    figures = repetition_figures(two_agents(), [2])
    assert [agent.window_seconds for agent in figures.agents] == [None, None]
    assert figures.window.seconds == 1.0


def test_the_span_of_one_window_runs_is_read_in_the_coordinators_clock() -> None:
    a = one_window("a", 1, 2 * SECOND_NS, started_ns=1_000_000)
    b = one_window("b", 1, 3 * SECOND_NS, started_ns=5_000_500)
    clocks = {
        "a": ClockEstimate(offset_ns=0, uncertainty_ns=1, rtt_ns=2, samples=1),
        "b": ClockEstimate(offset_ns=4_000_000, uncertainty_ns=1, rtt_ns=2, samples=1),
    }
    # a runs 1_000_000 + 2 s, b 1_000_500 + 3 s in the coordinator's clock.
    assert run_span_ns([a, b], clocks) == 3 * SECOND_NS + 500
    assert run_span_ns(two_agents(), clocks) is None  # interval drivers: no runs
    with pytest.raises(ValueError, match="some agents report their own run and some not"):
        run_span_ns([a, two_agents()[1]], clocks)


def test_a_clusters_shards_and_redirects_are_merged_over_the_window() -> None:
    """Per primary: the replies it gave in the window, over agents; the redirections summed;
    the warm-up left out; the shards' counts add up to the repetition's."""
    def clustered(index: int, phase: str, a: list[int], b: list[int],
                  moved: int) -> dict[str, Any]:
        data = interval(index, phase, commands={"GET": command(a + b)})
        data["shards"] = {"10.0.0.1:7000": command(a), "10.0.0.1:7001": command(b)}
        data["redirects"] = {"MOVED": moved} if moved else {}
        return data

    one = report("c1", [clustered(0, "warmup", [5], [5], 7),
                        clustered(1, "measure", [100, 200, 300], [400], 2)])
    two = report("c2", [clustered(0, "warmup", [5], [5], 0),
                        clustered(1, "measure", [100], [900, 1000], 1)])
    figures = repetition_figures([one, two], [1])
    assert {name: shard.count for name, shard in figures.shards.items()} == {
        "10.0.0.1:7000": 4, "10.0.0.1:7001": 3}
    assert sum(shard.count for shard in figures.shards.values()) == figures.count
    assert figures.shards["10.0.0.1:7001"].latency_usec.max == pytest.approx(1000, rel=0.01)
    assert figures.redirects == {"MOVED": 3}
    assert [r.redirects for r in figures.agents[0].intervals] == [{"MOVED": 7}, {"MOVED": 2}]


def test_a_single_servers_repetition_has_no_cluster_keys() -> None:
    figures = repetition_figures([report("c1", [interval(0)])], [0])
    written = json.loads(figures.model_dump_json())
    assert "shards" not in written and "redirects" not in written
