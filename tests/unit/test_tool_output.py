"""The parsers of external load tools' output (agent/drivers/memtier_output.py,
redis_benchmark_output.py): real captured outputs (tests/fixtures/memtier, redis-benchmark),
round trips through the tools' own print format, and hostile input that must end as one
ToolOutputError naming the tool, never another exception."""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers import memtier_output, redis_benchmark_output
from agent.drivers.redis_benchmark_output import HIGHEST_USEC, LOWEST_USEC, PercentileLine
from agent.drivers.tool_output import ToolOutputError, rerecord
from agent.histograms import HistogramParams

FIXTURES = Path(__file__).parent.parent / "fixtures"
MEMTIER = FIXTURES / "memtier"
REDIS_BENCHMARK = FIXTURES / "redis-benchmark"
PARAMS = HistogramParams()
MS = 1_000_000


def fixture(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# --- memtier_benchmark ------------------------------------------------------------------------


def test_memtier_logs_count_what_the_json_totals_count() -> None:
    totals = memtier_output.read_json_totals(fixture(MEMTIER / "memtier-1t20c.json"))
    assert totals.commands["Sets"].count == 49034
    assert totals.commands["Gets"].count == 490247
    assert totals.total_count == 539281
    assert sum(totals.commands["Gets"].per_second) == totals.commands["Gets"].count
    for name, key in (("SET_command", "Sets"), ("GET_command", "Gets"), ("FULL", "Totals")):
        path = next(MEMTIER.glob(f"memtier-1t20c_{name}*_1.hgrm"))
        (entry,) = memtier_output.read_hdr_log(fixture(path), path.name)
        expected = totals.total_count if key == "Totals" else totals.commands[key].count
        assert entry.histogram.get_total_count() == expected
        # One entry, the whole run: the same window as the JSON's (ms rounding apart).
        assert abs(entry.start_s * 1000 - totals.start_ms) <= 1
        assert abs(entry.end_s * 1000 - totals.finish_ms) <= 1


def test_memtier_two_commands_are_named_by_their_first_word() -> None:
    folder = MEMTIER / "two-commands"
    totals = memtier_output.read_json_totals(fixture(folder / "mt2cmd.json"))
    assert set(totals.commands) == {"Sets", "Hsets"}
    for word, key in (("SET", "Sets"), ("HSET", "Hsets")):
        text = fixture(folder / f"mt2cmd_{word}_command_run_1.hgrm")
        (entry,) = memtier_output.read_hdr_log(text)
        assert entry.histogram.get_total_count() == totals.commands[key].count


def test_memtier_histograms_have_two_significant_figures_from_10_usec() -> None:
    """The resolution docs/drivers.md states: memtier's histograms are 10..6e8 µs, 2 figures."""
    (entry,) = memtier_output.read_hdr_log(fixture(MEMTIER / "memtier-1t20c_FULL_RUN_1.hgrm"))
    histogram = entry.histogram
    assert (histogram.lowest_trackable_value, histogram.significant_figures) == (10, 2)
    assert histogram.highest_trackable_value == 600_000_000
    assert histogram.get_max_value() == 3471 == entry.max_value  # µs, like "Max Latency" 3.471 ms


def test_rerecorded_memtier_histogram_keeps_counts_and_percentiles() -> None:
    (entry,) = memtier_output.read_hdr_log(fixture(MEMTIER / "memtier-1t20c_FULL_RUN_1.hgrm"))
    source = entry.histogram
    moved, overflow = rerecord(source, PARAMS)
    assert overflow == 0
    assert moved.get_total_count() == source.get_total_count()
    for percentile in (50.0, 90.0, 99.0, 99.9, 100.0):
        expected = source.get_highest_equivalent_value(source.get_value_at_percentile(percentile))
        assert moved.get_value_at_percentile(percentile) == expected


def test_memtier_log_reader_takes_the_java_layout_too() -> None:
    """A log written by HdrHistogram's Java/Python writer (interval lengths, tags, a base time)
    reads to the same counts and absolute times."""
    histogram = HdrHistogram(10, 600_000_000, 2)
    for value in (50, 175, 335, 3471):
        histogram.record_value(value, 3)
    histogram.set_start_time_stamp(1_795_615_398_990)
    histogram.set_end_time_stamp(1_795_615_400_990)
    out = io.StringIO()
    writer = HistogramLogWriter(out)
    writer.output_log_format_version()
    out.write("#[StartTime: 1795615398.000 (seconds since epoch), Sat Nov 28 2026]\n")
    writer.output_base_time(1_795_615_398_000)
    writer.base_time = 1_795_615_398_000
    writer.output_legend()
    writer.output_interval_histogram(histogram)
    # The Java writer's tagged form (the Python one writes no tags).
    out.write(f"Tag=GET,0.990,2.000,3.471,{histogram.encode().decode('ascii')}\n")
    untagged, entry = memtier_output.read_hdr_log(out.getvalue())
    assert (untagged.tag, entry.tag) == (None, "GET")
    assert untagged.histogram.get_total_count() == entry.histogram.get_total_count() == 12
    assert math.isclose(untagged.start_s, entry.start_s)
    assert math.isclose(untagged.end_s, entry.end_s)
    assert math.isclose(entry.start_s, 1_795_615_398.990)
    assert math.isclose(entry.end_s, 1_795_615_400.990)


MALFORMED_LOGS = {
    "empty": "",
    "headers only": "#[StartTime: 1.0 (seconds since epoch), x]\n",
    "no legend": "1795615398.990,1795615403.992,3471.0,HISTFAAAA\n",
    "bad histogram": memtier_output._LEGEND_END + "\n1.0,2.0,3.0,HISTnotahistogram\n",
    "three fields": memtier_output._LEGEND_END + "\n1.0,2.0,HISTFAAAA\n",
    "not a number": memtier_output._LEGEND_END + "\n1.0,later,3.0,HISTFAAAA\n",
}


@pytest.mark.parametrize("text", MALFORMED_LOGS.values(), ids=list(MALFORMED_LOGS))
def test_malformed_memtier_log_is_one_line_naming_the_tool(text: str) -> None:
    with pytest.raises(ToolOutputError) as caught:
        memtier_output.read_hdr_log(text, "x.hgrm")
    assert str(caught.value).startswith("memtier_benchmark: ")
    assert "\n" not in str(caught.value)


@settings(max_examples=60)
@given(st.data())
def test_truncated_memtier_outputs_parse_or_fail_as_tool_errors(data: st.DataObject) -> None:
    for name in ("memtier-1t20c.json", "memtier-1t20c_GET_command_run_1.hgrm"):
        text = fixture(MEMTIER / name)
        cut = data.draw(st.integers(0, len(text) - 1), label=name)
        try:
            if name.endswith(".json"):
                memtier_output.read_json_totals(text[:cut])
            else:
                memtier_output.read_hdr_log(text[:cut])
        except ToolOutputError as exc:
            assert str(exc).startswith("memtier_benchmark: ")


def test_json_whose_commands_disagree_with_totals_is_refused() -> None:
    text = fixture(MEMTIER / "memtier-1t20c.json").replace('"Count": 49034', '"Count": 49035', 1)
    with pytest.raises(ToolOutputError, match="Totals"):
        memtier_output.read_json_totals(text)


def test_memtiers_runtime_is_the_window_when_it_lies_within_its_run() -> None:
    totals = memtier_output.read_json_totals(fixture(MEMTIER / "memtier-1t20c.json"))
    start, finish = totals.start_ms * MS, totals.finish_ms * MS
    window = memtier_output.run_window(totals, start - 7 * MS, finish + 12 * MS)
    assert window == memtier_output.RunWindow(start, finish - start, memtiers=True)
    # memtier rounds its instants down to the ms: a start up to 1 ms before the spawn is its
    assert memtier_output.run_window(totals, start + MS - 1, finish).memtiers


def test_a_runtime_that_cannot_be_is_replaced_by_the_runs_spawn_to_exit() -> None:
    """memtier averages its clients' instants seconds and microseconds apart, truncating:
    instants straddling a second boundary lose part of a second. A run of 200 requests in a
    lab test then finished before it started, and coord refused the whole run."""
    text = fixture(MEMTIER / "memtier-1t20c.json")
    totals = memtier_output.read_json_totals(text)
    spawned, ended = totals.start_ms * MS - 5 * MS, totals.finish_ms * MS + 9 * MS
    backwards = dataclasses.replace(totals, finish_ms=totals.start_ms - 500)
    early = dataclasses.replace(totals, start_ms=totals.start_ms - 700)  # before its spawn
    late = dataclasses.replace(totals, finish_ms=totals.finish_ms + 600)  # after its exit
    for broken in (backwards, early, late):
        assert memtier_output.run_window(broken, spawned, ended) == memtier_output.RunWindow(
            spawned, ended - spawned, memtiers=False)
    swapped = text.replace(f'"Finish time": {totals.finish_ms}',
                           f'"Finish time": {totals.start_ms - 500}', 1)
    assert memtier_output.read_json_totals(swapped).finish_ms == totals.start_ms - 500  # read


def test_a_memtier_log_whose_interval_runs_backwards_is_read_as_written() -> None:
    """memtier's log carries the same truncated average as its JSON's Runtime: a CI run failed
    on a log of 200 requests whose end came before its start. coord takes only the histogram
    from the log."""
    text = fixture(MEMTIER / "memtier-1t20c_GET_command_run_1.hgrm")
    (entry,) = memtier_output.read_hdr_log(text)
    start, end = f"{entry.start_s:.3f}", f"{entry.end_s:.3f}"
    earlier = f"{entry.start_s - 0.5:.3f}"
    backwards = text.replace(f"{start},{end},", f"{start},{earlier},", 1)
    assert backwards != text
    (read,) = memtier_output.read_hdr_log(backwards)
    assert read.end_s < read.start_s
    assert read.histogram.get_total_count() == entry.histogram.get_total_count()


# --- redis-benchmark --------------------------------------------------------------------------


def test_redis_benchmark_report_per_test() -> None:
    tests = redis_benchmark_output.read_report(fixture(REDIS_BENCHMARK / "set-get.stdout"))
    assert [test.name for test in tests] == ["SET", "GET"]
    for test in tests:
        assert (test.requests, test.clients, test.payload_bytes, test.threads) == (20000, 10, 32, 2)
        assert test.recorded == 20000
        assert test.distribution[0] == PercentileLine(
            0.0, test.distribution[0].value_usec, test.distribution[0].cumulative_count
        )
        histogram, overflow = test.histogram(PARAMS)
        assert (histogram.get_total_count(), overflow) == (20000, 0)
    first = tests[0].distribution
    assert first[1] == PercentileLine(50.0, 47, 10393)
    assert first[-1] == PercentileLine(100.0, 5303, 20000)


@pytest.mark.parametrize(
    ("sample", "name"),
    [("hset", "HSET myhash __rand_int__ __rand_int__"),
     ("eval-pipeline", 'eval return redis.call("ping") 0')],
)  # fmt: skip
def test_redis_benchmark_arbitrary_commands(sample: str, name: str) -> None:
    (test,) = redis_benchmark_output.read_report(fixture(REDIS_BENCHMARK / f"{sample}.stdout"))
    assert test.name == name
    assert test.requests == test.recorded == 20000


def test_redis_benchmark_precision_changes_only_the_summary() -> None:
    text = fixture(REDIS_BENCHMARK / "set-get-precision3.stdout")
    for test in redis_benchmark_output.read_report(text):
        assert all(line.value_usec % 8 == 7 for line in test.distribution)  # 8 µs buckets


def test_redis_benchmark_csv() -> None:
    rows = redis_benchmark_output.read_csv(fixture(REDIS_BENCHMARK / "set-get-csv.stdout"))
    assert [row.test for row in rows] == ["SET", "GET"]
    assert rows[0].p50_ms == 0.055 and rows[1].max_ms == 5.751


@pytest.mark.parametrize(
    ("sample", "replies", "connection_failures", "first"),
    [("noauth", {"NOAUTH": 1}, 0, "replied with error: NOAUTH Authentication required."),
     ("wrongtype", {"WRONGTYPE": 1}, 0, "Error from server: WRONGTYPE"),
     ("refused", {}, 1, "Could not connect to Redis at 127.0.0.1:1: Connection refused"),
     ("set-get", {}, 0, None)],
)  # fmt: skip
def test_redis_benchmark_error_lines(
    sample: str, replies: dict[str, int], connection_failures: int, first: str | None
) -> None:
    errors = redis_benchmark_output.read_errors(fixture(REDIS_BENCHMARK / f"{sample}.stderr"))
    assert errors.replies == replies
    assert errors.connection_failures == connection_failures
    if first is None:
        assert errors.first is None and not errors.any
    else:
        assert errors.first is not None and first in errors.first


@pytest.mark.parametrize("sample", ["noauth", "wrongtype", "refused"])
def test_redis_benchmark_without_a_report_is_a_tool_error(sample: str) -> None:
    with pytest.raises(ToolOutputError, match=r"^redis-benchmark: no test report"):
        redis_benchmark_output.read_report(fixture(REDIS_BENCHMARK / f"{sample}.stdout"))


MALFORMED_REPORTS = {
    "no distribution": "====== SET ======\n  100 requests completed in 0.01 seconds\n",
    "bad line": "====== SET ======\nLatency by percentile distribution:\n50% about 1 ms\n",
    "backwards": (
        "====== SET ======\nLatency by percentile distribution:\n"
        "50.000% <= 0.047 milliseconds (cumulative count 10)\n"
        "60.000% <= 0.031 milliseconds (cumulative count 12)\n"
    ),
    "short of 100%": (
        "====== SET ======\n  20 requests completed in 0.01 seconds\n"
        "Latency by percentile distribution:\n"
        "50.000% <= 0.047 milliseconds (cumulative count 10)\n\n"
    ),
    "more than completed": (
        "====== SET ======\n  5 requests completed in 0.01 seconds\n"
        "Latency by percentile distribution:\n"
        "100.000% <= 0.047 milliseconds (cumulative count 10)\n\n"
    ),
}


@pytest.mark.parametrize("text", MALFORMED_REPORTS.values(), ids=list(MALFORMED_REPORTS))
def test_malformed_redis_benchmark_report_is_one_line_naming_the_tool(text: str) -> None:
    with pytest.raises(ToolOutputError) as caught:
        redis_benchmark_output.read_report(text)
    assert str(caught.value).startswith("redis-benchmark: ")
    assert "\n" not in str(caught.value)


@settings(max_examples=80)
@given(st.data())
def test_truncated_redis_benchmark_output_parses_or_fails_as_a_tool_error(
    data: st.DataObject,
) -> None:
    for name in ("set-get.stdout", "set-get-csv.stdout"):
        text = fixture(REDIS_BENCHMARK / name)
        cut = data.draw(st.integers(0, len(text) - 1), label=name)
        reader = (
            redis_benchmark_output.read_csv
            if "csv" in name
            else (redis_benchmark_output.read_report)
        )
        try:
            reader(text[:cut])
        except ToolOutputError as exc:
            assert str(exc).startswith("redis-benchmark: ")


# --- the tool's print format, round trip ------------------------------------------------------


def print_distribution(histogram: HdrHistogram) -> list[PercentileLine]:
    """What redis-benchmark prints for ``histogram``: HdrHistogram_c's percentile iterator with
    one tick per half distance, a line only when the cumulative count moved (and at 100%),
    values as each bucket's highest equivalent value, as the tool does (redis-benchmark.c)."""
    total = histogram.get_total_count()
    lines: list[PercentileLine] = []
    target = 0.0
    cumulative = 0
    previous = -1

    def emit(percentile: float, value: int) -> None:
        nonlocal previous
        if cumulative != previous or cumulative == total:
            lines.append(PercentileLine(round(percentile, 3), value, cumulative))
        previous = cumulative

    value = 0
    for index in range(histogram.counts_len):
        count = histogram.get_count_at_index(index)
        if not count:
            continue
        cumulative += count
        value = histogram.get_highest_equivalent_value(histogram.get_value_from_index(index))
        while target <= 100.0 * cumulative / total:
            emit(target, value)
            half_distance = 2 ** (int(math.log(100 / (100.0 - target)) / math.log(2)) + 1)
            target += 100.0 / half_distance
            if cumulative == total:
                break
    emit(100.0, value)
    return lines


def render(name: str, lines: list[PercentileLine], requests: int) -> str:
    """A whole redis-benchmark report of one test, around ``lines``."""
    distribution = "".join(
        f"{line.percentile:3.3f}% <= {line.value_usec / 1000:.3f} milliseconds "
        f"(cumulative count {line.cumulative_count})\n"
        for line in lines
    )
    return (
        f"\r{name}: rps=0.0 (overall: -nan) avg_msec=-nan (overall: -nan)\r\r====== {name} ======\n"
        f"  {requests} requests completed in 0.25 seconds\n  10 parallel clients\n"
        f"  3 bytes payload\n  keep alive: 1\n  multi-thread: yes\n  threads: 2\n\n"
        f"Latency by percentile distribution:\n{distribution}\n"
        "Cumulative distribution of latencies:\n100.000% <= 6.103 milliseconds "
        f"(cumulative count {requests})\n\nSummary:\n"
        "  throughput summary: 79681.28 requests per second\n"
    )


def test_the_printer_reproduces_the_tools_own_output() -> None:
    """The test's printer, fed the histogram rebuilt from a real report, prints that report."""
    tests = redis_benchmark_output.read_report(fixture(REDIS_BENCHMARK / "set-get.stdout"))
    for test in tests:
        tool = HdrHistogram(LOWEST_USEC, HIGHEST_USEC, 3)
        before = 0
        for line in test.distribution:
            if line.cumulative_count > before:
                tool.record_value(line.value_usec, line.cumulative_count - before)
            before = line.cumulative_count
        assert print_distribution(tool) == list(test.distribution)


latencies = st.lists(
    st.one_of(st.integers(LOWEST_USEC, 2_000), st.integers(2_000, HIGHEST_USEC)),
    min_size=1,
    max_size=400,
)


@settings(max_examples=150)
@given(latencies, st.sampled_from([2, 3, 4]))
def test_a_rebuilt_histogram_keeps_the_printed_percentiles_within_the_resolution(
    values: list[int], precision: int
) -> None:
    """histogram → printed like the tool → parsed → rebuilt in coord's parameters → printed
    again: the same percentiles and cumulative counts, every value within one bucket of the
    tool's histogram (the printed resolution, docs/drivers.md)."""
    tool = HdrHistogram(LOWEST_USEC, HIGHEST_USEC, precision)
    for value in values:
        tool.record_value(value)
    printed = print_distribution(tool)
    (test,) = redis_benchmark_output.read_report(render("SET", printed, len(values)))
    # coord's histograms need the tool's figures at least: finer buckets, never coarser.
    params = HistogramParams(significant_figures=max(3, precision))
    rebuilt, overflow = test.histogram(params)
    assert overflow == 0
    assert rebuilt.get_total_count() == len(values)
    again = print_distribution(rebuilt)
    assert [(x.percentile, x.cumulative_count) for x in again] == [
        (x.percentile, x.cumulative_count) for x in printed
    ]
    for before, after in zip(printed, again, strict=True):
        bucket = (
            tool.get_highest_equivalent_value(before.value_usec)
            - tool.get_lowest_equivalent_value(before.value_usec)
            + 1
        )
        assert before.value_usec <= after.value_usec < before.value_usec + bucket


#: memtier_benchmark 2.x's stderr when nothing listens at the target (it still exits 0): the
#: reason follows a progress line ended by ``\r`` as often as a line start.
MEMTIER_REFUSED = (
    "Json file /tmp/run.json created...\nWriting results to stdout\n"
    "[RUN #1] Preparing benchmark client...\n[RUN #1] Launching threads now...\n"
    "[RUN #1 0%,   0 secs]  1 threads  1 conns:           0 ops,       0 (avg:       0) "
    "ops/sec, 0.00KB/sec (avg: 0.00KB/sec),  0.00 (avg:  0.00) msec latency"
    "Connection error: Connection refused\n"
    "Maximum reconnection attempts (0) exceeded for Connection error, triggering thread "
    "restart.\n"
)


def test_memtiers_connection_error_is_read_from_its_stderr() -> None:
    assert memtier_output.connection_error(MEMTIER_REFUSED) == "Connection refused"
    assert memtier_output.connection_error(
        "[RUN #1] Launching threads now...\nConnection error: No route to host \r\n"
    ) == "No route to host"
    clean = "Json file x created...\n[RUN #1] Launching threads now...\n[RUN #1 100%, 1 secs]\r"
    assert memtier_output.connection_error(clean) is None
