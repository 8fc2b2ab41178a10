"""The pure parts of a run: the spec agents receive, phases, marks, repetition policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers.memtier import driver_params
from agent.drivers.redis_benchmark_plan import parse_driver_params
from agent.drivers.spec import Timeline, parse_spec
from coordinator.core.errors import AgentLost, CoordError, FleetError, HostError, UsageError
from coordinator.core.stats import repetition_figures
from coordinator.inventory.loader import load_inventory, parse_inventory
from coordinator.inventory.schema import MemtierCommand, MemtierDriver, RedisBenchmarkDriver
from coordinator.inventory.server_auth import target_password
from coordinator.results import ResultsError
from coordinator.run.loadspec import load_spec, phases
from coordinator.run.runner import (
    RunFailed,
    check_repetitions,
    failure_record,
    repetition_marks,
    run_marks,
)
from tests.unit.test_stats import interval, report

EXAMPLE = Path(__file__).parents[2] / "inventory" / "two-clients.yaml"


def test_the_spec_carries_the_target_phases_and_fixed_histogram_settings() -> None:
    inventory = load_inventory(EXAMPLE, ["servers[0].password=s3cret"]).inventory
    spec = json.loads(load_spec(inventory, password=target_password(inventory)))
    assert spec["target"] == {"address": "198.18.0.10", "port": 6379, "password": "s3cret",
                              "username": None, "tls": None, "source_address": None}
    assert spec["timeline"] == {"interval_ns": 1_000_000_000, "warmup_intervals": 5,
                                "measure_intervals": 30, "drain_ns": 10_000_000_000}
    assert spec["histogram"] == {"lowest_usec": 1, "highest_usec": 60_000_000,
                                 "significant_figures": 3}
    assert spec["params"]["connections"] == 50


def test_partial_intervals_are_rounded_up() -> None:
    inventory = load_inventory(EXAMPLE, ["benchmark.warmup=1500ms", "benchmark.duration=2500ms",
                                         "benchmark.interval=1s"]).inventory
    planned = phases(inventory)
    assert (planned.warmup_intervals, planned.measure_intervals) == (2, 3)
    assert planned.total_s == 5


@settings(max_examples=200, deadline=None)
@given(interval_ms=st.integers(10, 5000), warmup_ms=st.integers(0, 120_000),
       duration_ms=st.integers(1, 600_000))
def test_every_valid_inventory_gives_a_spec_the_agent_accepts(
    interval_ms: int, warmup_ms: int, duration_ms: int
) -> None:
    inventory = load_inventory(EXAMPLE, [
        f"benchmark.interval={interval_ms}ms", f"benchmark.warmup={warmup_ms}ms",
        f"benchmark.duration={duration_ms}ms",
    ]).inventory
    parsed = parse_spec(load_spec(inventory, password=None))
    assert parsed.timeline == phases(inventory)  # the very intervals, no seconds in between
    assert parsed.timeline.interval_ns == interval_ms * 1_000_000


def test_other_drivers_and_several_targets_are_refused_clearly() -> None:
    valid = load_inventory(EXAMPLE).inventory
    bench = valid.benchmark.model_copy(update={"driver": "wrk"})  # past the schema's Literal
    inventory = valid.model_copy(update={"benchmark": bench})
    with pytest.raises(UsageError, match="wrk is not supported by `coord run` yet"):
        load_spec(inventory, password=None)
    text = EXAMPLE.read_text().replace(
        "servers:\n", "servers:\n  - name: other\n    host: server\n    port: 6380\n")
    two = parse_inventory(text, "two.yaml").inventory
    with pytest.raises(UsageError, match="a run loads one server, got other, redis"):
        load_spec(two, password=None)


def test_fewer_than_three_repetitions_need_an_explicit_option() -> None:
    once = load_inventory(EXAMPLE, ["benchmark.repetitions=1"]).inventory
    with pytest.raises(UsageError, match="pass --repetitions 1"):
        check_repetitions(once, explicit=False)
    check_repetitions(once, explicit=True)
    check_repetitions(load_inventory(EXAMPLE).inventory, explicit=False)


def test_run_marks() -> None:
    assert run_marks(load_inventory(EXAMPLE).inventory) == []
    shared = load_inventory(EXAMPLE, ["hosts[0].roles=[server, client]",
                                      "benchmark.repetitions=2"]).inventory
    assert run_marks(shared) == ["fewer-than-3-repetitions", "load-on-server-host"]


def test_repetition_marks() -> None:
    empty = repetition_figures([], [])
    assert repetition_marks(empty, 0.01) == ["no-common-window"]
    measured = repetition_figures([report("a", [interval(0)])], [0])
    assert repetition_marks(measured, 0.01) == []
    failing = measured.model_copy(update={"error_rate": 0.5})
    assert repetition_marks(failing, 0.01) == ["error-rate-above-threshold"]


def test_only_the_first_load_of_a_run_preloads_the_keyspace() -> None:
    inventory = load_inventory(EXAMPLE, ["benchmark.builtin.preload=true"]).inventory
    first = json.loads(load_spec(inventory, password=None, first_load=True))
    assert first["params"]["preload"] is True
    assert json.loads(load_spec(inventory, password=None))["params"]["preload"] is False
    without = load_inventory(EXAMPLE).inventory
    unasked = json.loads(load_spec(without, password=None, first_load=True))
    assert unasked["params"]["preload"] is False


@pytest.mark.parametrize(("error", "hosts"), [
    (AgentLost("client2", "no answer to heartbeat() within 10 s"), ["client2"]),
    (FleetError({"client2": HostError("client2", "down"),
                 "client1": HostError("client1", "down")}), ["client1", "client2"]),
    (RunFailed("client2, client1: load did not finish", ["client2", "client1"]),
     ["client1", "client2"]),
    (ResultsError("results: disk full"), []),
])
def test_a_failure_record_keeps_the_message_and_the_hosts(error: CoordError,
                                                          hosts: list[str]) -> None:
    record = failure_record(error)
    assert record.hosts == hosts
    assert record.reason == "; ".join(error.lines())


def test_a_redis_benchmark_spec_is_what_its_driver_reads() -> None:
    inventory = load_inventory(EXAMPLE, [
        "benchmark.driver=redis-benchmark", "benchmark.warmup=2s", "benchmark.duration=5s",
        "benchmark.redis_benchmark.threads=3", "benchmark.redis_benchmark.requests=40000",
    ]).inventory
    parsed = parse_spec(load_spec(inventory, password=None))
    assert parsed.driver == "redis-benchmark"
    # no per-interval data: one measure interval as long as the measure phase, after whole
    # such intervals covering the warm-up (a separate, unmeasured run)
    assert parsed.timeline == Timeline(5_000_000_000, 1, 1) == phases(inventory)
    params = parse_driver_params(parsed.params)
    assert (params.sized, params.warmup_s) == (True, 2.0)
    assert (params.tool.threads, params.tool.requests, params.tool.tests) == (3, 40000,
                                                                            ("set", "get"))


def test_a_redis_benchmark_command_replaces_the_tests_and_requests_may_be_sized() -> None:
    inventory = load_inventory(EXAMPLE, ["benchmark.driver=redis-benchmark"]).inventory
    bench = inventory.benchmark.model_copy(update={
        "redis_benchmark": RedisBenchmarkDriver(command=["HSET", "h", "f:__rand_int__", "v"])})
    inventory = inventory.model_copy(update={"benchmark": bench})
    params = parse_driver_params(parse_spec(load_spec(inventory, password=None)).params)
    assert (params.tool.tests, params.tool.command) == (None, ("HSET", "h", "f:__rand_int__", "v"))
    assert params.sized is False


def test_redis_benchmark_tests_and_command_together_are_refused() -> None:
    with pytest.raises(ValueError, match="give tests or command, not both"):
        RedisBenchmarkDriver(tests=["set"], command=["PING"])


def test_a_memtier_spec_is_what_its_driver_reads() -> None:
    inventory = load_inventory(EXAMPLE, [
        "benchmark.driver=memtier", "benchmark.duration=2500ms", "benchmark.warmup=1s",
        "benchmark.memtier.commands=[{command: 'HSET h __key__ __data__', ratio: 2}, "
        "{command: 'GET __key__', key_pattern: G}]",
    ]).inventory
    parsed = parse_spec(load_spec(inventory, password=None))
    assert parsed.timeline == Timeline(2_500_000_000, 1, 1)
    params = driver_params(parsed)
    assert (params.ratio, params.test_time, params.requests) == (None, 3, None)
    assert params.commands is not None
    assert [(c.command, c.ratio, c.key_pattern) for c in params.commands] == [
        ("HSET h __key__ __data__", 2, "R"), ("GET __key__", 1, "G")]


def test_memtier_ratio_and_commands_together_are_refused() -> None:
    with pytest.raises(ValueError, match="give ratio or commands, not both"):
        MemtierDriver(ratio="1:1", commands=[MemtierCommand(command="PING")])
