"""The redis-benchmark driver's pure decisions: its params, sizing, and the one interval a
run's report becomes (real captured output)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.drivers.errors import DriverError
from agent.drivers.redis_benchmark_output import read_errors, read_report
from agent.drivers.redis_benchmark_plan import (
    CALIBRATION_MIN_S,
    command_name,
    next_calibration,
    parse_driver_params,
    rate_of,
    requests_for,
    run_failure,
    run_interval,
    run_seconds,
)
from agent.histograms import HistogramParams, decode

FIXTURES = Path(__file__).parents[1] / "fixtures" / "redis-benchmark"
PARAMS = {
    "tests": ["set"], "command": None, "clients": 4, "threads": 2, "pipeline": 1,
    "value_size": 8, "keyspace": 100, "requests": None, "precision": 3, "warmup_s": 0,
}  # fmt: skip


def test_null_requests_means_sized_and_warmup_is_required() -> None:
    assert parse_driver_params(PARAMS).sized is False
    assert parse_driver_params({**PARAMS, "requests": 5}).with_requests(7).requests == 7
    with pytest.raises(DriverError, match=r"spec\.params\.warmup_s must be a number >= 0"):
        parse_driver_params({**PARAMS, "warmup_s": -1})
    with pytest.raises(DriverError, match=r"spec\.params\.warmup_s"):
        parse_driver_params({k: v for k, v in PARAMS.items() if k != "warmup_s"})


@given(st.integers(1, 10**7), st.floats(0.0, 100.0))
def test_calibration_grows_until_a_run_is_long_enough(requests: int, seconds: float) -> None:
    following = next_calibration(requests, seconds)
    if seconds >= CALIBRATION_MIN_S:
        assert following is None
    else:
        assert following is not None and following >= 2 * requests


@given(st.floats(1.0, 1e7), st.floats(0.01, 3600.0))
def test_sized_requests_last_the_phase(rate: float, seconds: float) -> None:
    sized = requests_for(rate, seconds)
    assert sized >= 1 and abs(sized - max(1.0, rate * seconds)) <= 0.5 + 1e-9 * rate * seconds


@given(st.floats(1.0, 1e7), st.floats(0.01, 3600.0), st.integers(1, 10_000))
def test_sized_requests_are_whole_pipelines(rate: float, seconds: float, pipeline: int) -> None:
    # redis-benchmark completes -n rounded up to a multiple of -P: -n must be one already
    sized = requests_for(rate, seconds, pipeline)
    assert sized >= pipeline and sized % pipeline == 0
    assert abs(sized - max(pipeline, rate * seconds)) <= pipeline / 2 + 1e-9 * rate * seconds


def test_a_run_becomes_one_measure_interval_per_command() -> None:
    tests = read_report((FIXTURES / "set-get.stdout").read_text())
    interval = run_interval(3, tests, read_errors(""), HistogramParams(), complete=True)
    assert (interval.index, interval.phase, interval.complete) == (3, "measure", True)
    assert {name: c.count for name, c in interval.commands.items()} == {
        command_name(test): test.requests for test in tests}
    assert interval.requests == sum(test.requests for test in tests)
    recorded = sum(decode(c.histogram).get_total_count() for c in interval.commands.values())
    assert recorded + interval.overflow == interval.requests
    assert rate_of(tests) > 0


def test_an_arbitrary_commands_name_is_its_first_word() -> None:
    (test,) = read_report((FIXTURES / "hset.stdout").read_text())
    assert command_name(test) == "HSET"


def test_error_replies_are_requests_and_errors_by_type() -> None:
    errors = read_errors((FIXTURES / "wrongtype.stderr").read_text())
    tests = read_report((FIXTURES / "set-get.stdout").read_text())
    interval = run_interval(0, tests, errors, HistogramParams(), complete=False)
    assert interval.errors == {"WRONGTYPE": 1}
    assert interval.requests == sum(test.requests for test in tests) + 1


def test_the_run_lasts_what_the_tools_throughput_summary_says_to_the_millisecond() -> None:
    tests = read_report((FIXTURES / "set-get.stdout").read_text())
    # each test: 20000 requests at 79681.28 requests/s = 0.251 s ("completed in 0.25")
    assert [test.seconds for test in tests] == [0.25, 0.25]
    assert run_seconds(tests) == pytest.approx(0.502, abs=1e-4)
    (hset,) = read_report((FIXTURES / "hset.stdout").read_text())
    assert run_seconds([hset]) == pytest.approx(hset.requests / hset.throughput_rps)


@pytest.mark.parametrize(("sample", "kind", "said"), [
    ("wrongtype", "server", "exited with status 1: Error from server: WRONGTYPE"),
    ("noauth", "auth", "exited with status 1: Node 127.0.0.1:52593 replied with error: NOAUTH"),
    ("refused", "unreachable", "exited with status 124: Could not connect to Redis at"),
])  # fmt: skip
def test_a_failed_run_is_the_targets_failure_only_when_the_target_said_so(
    sample: str, kind: str, said: str
) -> None:
    status = int((FIXTURES / f"{sample}.rc").read_text())
    stderr = (FIXTURES / f"{sample}.stderr").read_text()
    error = run_failure("measured", status, read_errors(stderr), "")
    assert error.kind == kind
    assert error.message.startswith(f"redis-benchmark measured run {said}"), error.message


def test_a_tool_that_failed_on_its_own_is_a_tool_failure_not_the_servers() -> None:
    killed = run_failure("measured", -9, read_errors(""), "")
    assert (killed.kind, killed.message) == ("tool", "redis-benchmark measured run ended by "
                                                     "signal 9: no message")
    refused_option = run_failure("warm-up", 1, read_errors("Invalid option \"--x\"\n"),
                                 "Invalid option \"--x\"")
    assert refused_option.kind == "tool" and refused_option.message.endswith('"--x"')
