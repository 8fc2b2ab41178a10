"""The typed messages of the agent's remote methods and their one strict reader."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import api
from agent.drivers.intervals import PHASES, IntervalData, LoadReport
from agent.histograms import CommandLatencies, HistogramParams
from agent.messages import (
    Failure,
    LoadState,
    MessageError,
    ReadyInfo,
    decode,
    decode_reply,
    encode,
    encode_answer,
    encode_failure,
    from_text,
    to_text,
)
from agent.metrics.model import (
    INFO_MOMENTS,
    METRICS_PHASES,
    CpuShare,
    InterfaceTraffic,
    MetricsInterval,
    MetricsPlan,
    MetricsReport,
    ProcessCpu,
    RedisInfo,
    RedisTarget,
    Throttling,
)

counts = st.integers(min_value=0, max_value=2**63)
names = st.text(min_size=1, max_size=8)
finite = st.floats(allow_nan=False, allow_infinity=False)

intervals = st.builds(
    IntervalData,
    index=counts,
    phase=st.sampled_from(PHASES),
    complete=st.booleans(),
    commands=st.dictionaries(names, st.builds(CommandLatencies, st.text(), counts), max_size=3),
    requests=counts,
    errors=st.dictionaries(names, counts, max_size=3),
    bytes_sent=counts,
    bytes_received=counts,
    overflow=counts,
)
reports = st.builds(
    LoadReport,
    driver=st.text(),
    t0_ns=st.integers(),
    started_ns=st.integers(),
    start_spread_ns=counts,
    stopped_ns=st.integers(),
    interval_ns=st.integers(min_value=1),
    warmup_intervals=counts,
    measure_intervals=counts,
    histogram=st.builds(HistogramParams, st.just(1), st.integers(2, 10**9), st.integers(1, 5)),
    processes=counts,
    connections=counts,
    intervals=st.lists(intervals, max_size=4).map(tuple),
)

cpu_shares = st.builds(CpuShare, *[finite] * 7)
processes = st.builds(ProcessCpu, st.integers(), st.text(), finite, counts,
                      st.none() | st.integers(), st.none() | finite)
metrics_intervals = st.builds(
    lambda index, phase, start, length, cpu, cores, load, processes, missing: MetricsInterval(
        index=index, phase=phase, start_ns=start, end_ns=start + length, cpu=cpu, cores=cores,
        load_average_1m=load, memory_used_bytes=None, memory_available_bytes=1,
        interfaces={"eth0": InterfaceTraffic(1, 2, 3, 4)}, tcp_retransmits=0, listen_drops=None,
        listen_overflows=1, context_switches=9,
        throttling=Throttling("/sys/fs/cgroup/x", "v2", 0.2, 1, 1, 1),
        load_processes=processes, server_processes=(), missing=missing),
    st.integers(), st.sampled_from(METRICS_PHASES), st.integers(), counts,
    st.none() | cpu_shares, st.lists(cpu_shares, max_size=2).map(tuple), st.none() | finite,
    st.lists(processes, max_size=2).map(tuple), st.dictionaries(names, st.text(), max_size=2),
)  # fmt: skip
metrics_reports = st.builds(
    MetricsReport, interval_ns=st.integers(min_value=1), t0_ns=st.none() | st.integers(),
    intervals=st.lists(metrics_intervals, max_size=3).map(tuple),
    redis_info=st.lists(st.builds(RedisInfo, st.sampled_from(INFO_MOMENTS), st.integers(),
                                  st.dictionaries(names, st.dictionaries(names, st.text()))),
                        max_size=2).map(tuple),
    missing=st.dictionaries(names, st.text(), max_size=2),
)  # fmt: skip
metrics_plans = st.builds(
    MetricsPlan, interval_ns=st.integers(min_value=1), warmup_intervals=counts,
    intervals=st.integers(min_value=1),
    server_ports=st.lists(st.integers(1, 65535), max_size=2).map(tuple),
    redis=st.none() | st.builds(RedisTarget, st.text(), st.integers(1, 65535)),
)  # fmt: skip


def _messages() -> list[type]:
    kinds = {Failure, ReadyInfo}
    for method in api.METHODS.values():
        kinds.update(kind for kind in (method.request, method.answer) if kind is not str)
    return sorted(kinds, key=lambda kind: kind.__name__)


MESSAGES = _messages()


def instances(kind: type) -> st.SearchStrategy[Any]:
    """Any valid ``kind``; floats finite (NaN is not equal to itself, nor JSON)."""
    if kind is LoadReport:
        return reports
    if kind is MetricsReport:
        return metrics_reports
    if kind is MetricsPlan:
        return metrics_plans
    if kind is MetricsInterval:
        return metrics_intervals
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, hint in typing.get_type_hints(kind).items():
        strategy = _finite_strategy(hint)
        if strategy is not None:
            fields[name] = strategy
    return st.builds(kind, **fields)


def _finite_strategy(hint: Any) -> st.SearchStrategy[Any] | None:
    """A strategy for ``hint`` whose floats are finite, also inside nested messages (a
    platform description's host); None where hypothesis's own holds no float."""
    if hint is float:
        return finite
    if dataclasses.is_dataclass(hint):
        return instances(hint)  # type: ignore[arg-type]
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        inner = _finite_strategy(args[0])
        return None if inner is None else st.lists(inner, max_size=3).map(tuple)
    if args and type(None) in args and len(args) == 2:
        inner = _finite_strategy(next(arg for arg in args if arg is not type(None)))
        return None if inner is None else st.none() | inner
    return None


@pytest.mark.parametrize("kind", MESSAGES, ids=lambda kind: kind.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_message_encodes_and_decodes_to_itself(kind: type, data: st.DataObject) -> None:
    message = data.draw(instances(kind))
    assert from_text(kind, to_text(message)) == message
    assert decode_reply(kind, encode_answer(message)) == message


def _wrong_value(hint: object) -> object:
    """A JSON value of the wrong type for a field declared as ``hint``."""
    return "not a list" if typing.get_origin(hint) is tuple else [1, 2]


def _fields_of(kind: type) -> list[tuple[type, str]]:
    return [(kind, item.name) for item in dataclasses.fields(kind)]


@pytest.mark.parametrize(
    ("kind", "name"),
    [pair for kind in MESSAGES for pair in _fields_of(kind)],
    ids=lambda value: value.__name__ if isinstance(value, type) else value,
)
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_a_mistyped_field_is_one_line_naming_it(
    kind: type, name: str, data: st.DataObject
) -> None:
    document = encode(data.draw(instances(kind)))
    document[name] = _wrong_value(typing.get_type_hints(kind)[name])
    with pytest.raises(MessageError) as refused:
        decode(kind, document)
    message = str(refused.value)
    assert message.startswith(f"{name}: expected ")
    assert "\n" not in message


def test_unknown_and_missing_fields_are_refused_by_name() -> None:
    document = encode(Failure("auth", "wrong password"))
    with pytest.raises(MessageError, match=r"^surprise: unknown field$"):
        decode(Failure, {**document, "surprise": 1})
    del document["kind"]
    with pytest.raises(MessageError, match=r"^kind: missing$"):
        decode(Failure, document)


def test_exact_types_and_nested_paths() -> None:
    with pytest.raises(MessageError, match=r"^time_ns: expected an integer, got True$"):
        decode(api.AgentTime, {"time_ns": True})
    with pytest.raises(MessageError, match=r"^state: expected one of idle, .*, got 'done'$"):
        decode(api.LoadStopped, {"state": "done"})
    report = encode(LoadReport(
        driver="builtin", t0_ns=0, started_ns=0, start_spread_ns=0, stopped_ns=0,
        interval_ns=1, warmup_intervals=0, measure_intervals=1, histogram=HistogramParams(),
        processes=1, connections=1,
        intervals=(IntervalData(0, "measure", True, {"GET": CommandLatencies("x", 1)}),),
    ))  # fmt: skip
    report["intervals"][0]["commands"]["GET"]["count"] = 1.5
    with pytest.raises(
        MessageError, match=r"^intervals\.0\.commands\.GET\.count: expected an integer, got 1\.5$"
    ):
        decode(LoadReport, report)


def test_a_float_field_accepts_an_integer() -> None:
    status = decode(api.AgentStatus, {
        "uptime_s": 3, "pid": 1, "rss_bytes": 2, "cpu_s": 0.5, "children": 0,
        "heartbeat_age_s": None, "request_age_s": 1, "watchdog_s": 15,
    })  # fmt: skip
    assert status.uptime_s == 3.0 and type(status.uptime_s) is float


def test_refusals_cross_as_data() -> None:
    reply = decode_reply(api.Prepared, encode_failure("auth", "WRONGPASS\ninvalid password"))
    assert reply == Failure("auth", "WRONGPASS invalid password")
    with pytest.raises(MessageError):
        decode_reply(api.Prepared, json.dumps({"answer": {}, "error": {}}))
    with pytest.raises(MessageError, match=r"^not JSON"):
        decode_reply(api.Prepared, "{")


def test_load_states_are_one_enum() -> None:
    assert {state.value for state in LoadState} == {
        "idle", "preparing", "prepared", "running", "finished", "stopped", "failed",
    }  # fmt: skip
    assert decode(api.LoadProgress, encode(api.LoadProgress(LoadState.RUNNING))).state is (
        LoadState.RUNNING
    )


def test_the_method_table_names_each_method_once() -> None:
    assert set(api.METHODS) == {
        "hello", "heartbeat", "clock", "status", "stop", "take_run_lock", "prepare_load",
        "prepared", "start_load", "load_progress", "stop_load", "load_report", "describe",
        "baseline_tools", "start_netserver", "stop_netserver", "start_netperf", "netperf_result",
        "start_metrics", "align_metrics", "metrics_report", "latest_metrics",
    }  # fmt: skip
    with pytest.raises(MessageError, match="takes its request as JSON text"):
        api.START_LOAD.parse_request(5)
    assert api.START_LOAD.parse_request('{"t0_ns": 5}') == api.StartLoad(5)
