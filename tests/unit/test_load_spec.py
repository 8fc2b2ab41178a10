"""The load spec (agent.drivers.spec) and the builtin driver's params and plan: pure."""

from __future__ import annotations

import copy
import json
from typing import Any

import pydantic
import pytest

from agent.drivers import builtin_params
from agent.drivers.builtin_params import BuiltinParams, parse_params, plan
from agent.drivers.errors import DriverError
from agent.drivers.spec import START_WAITS, Timeline, parse_spec
from coordinator.inventory.schema import BuiltinDriver as InventoryBuiltin

SPEC: dict[str, Any] = {
    "format": 2,
    "driver": "builtin",
    "target": {
        "address": "198.18.0.10",
        "port": 6379,
        "password": None,
        "username": None,
        "tls": None,
    },
    "timeline": {"interval_ns": 1_000_000_000, "warmup_intervals": 2, "measure_intervals": 10},
    "histogram": {"lowest_usec": 1, "highest_usec": 60000000, "significant_figures": 3},
    "params": {
        "processes": None,
        "connections": 50,
        "pipeline": 1,
        "set_ratio": 0.1,
        "keyspace": 100000,
        "value_size": 32,
        "rate": None,
        "preload": False,
    },
}


def spec_with(path: str, value: object) -> str:
    spec = copy.deepcopy(SPEC)
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node[part]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return json.dumps(spec)


def test_the_documented_spec_parses() -> None:
    spec = parse_spec(json.dumps(SPEC))
    assert spec.driver == "builtin"
    assert spec.target.endpoint == "198.18.0.10:6379"
    assert spec.timeline == Timeline(1_000_000_000, 2, 10)
    assert spec.timeline.total_ns == 12_000_000_000
    assert [spec.timeline.phase(i) for i in (0, 1, 2, 11)] == [
        "warmup",
        "warmup",
        "measure",
        "measure",
    ]
    assert spec.histogram.highest_usec == 60_000_000
    assert parse_params(dict(spec.params)) == BuiltinParams(
        processes=None,
        connections=50,
        pipeline=1,
        set_ratio=0.1,
        keyspace=100000,
        value_size=32,
        preload=False,
    )


def test_a_password_never_shows_in_the_target_repr() -> None:
    spec = parse_spec(spec_with("target.password", "hunter2"))
    assert spec.target.password == "hunter2"
    assert "hunter2" not in repr(spec.target)


def test_the_phases_arrive_as_the_whole_intervals_sent() -> None:
    spec = json.loads(spec_with("timeline.interval_ns", 100_000_000))
    spec["timeline"].update(warmup_intervals=3, measure_intervals=7)
    assert parse_spec(json.dumps(spec)).timeline == Timeline(100_000_000, 3, 7)


def test_the_drain_limit_travels_with_the_phases_and_defaults_to_ten_seconds() -> None:
    spec = json.loads(spec_with("timeline.drain_ns", 250_000_000))
    timeline = parse_spec(json.dumps(spec)).timeline
    assert timeline.drain_ns == 250_000_000
    assert Timeline.from_json(timeline.to_json()) == timeline
    del spec["timeline"]["drain_ns"]
    assert parse_spec(json.dumps(spec)).timeline.drain_ns == 10_000_000_000


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("format", 1, "format 1 is not supported"),
        ("format", KeyError, "spec.format is missing"),
        ("driver", "", "spec.driver must be a non-empty string"),
        ("target.port", 0, "spec.target.port must be at least 1"),
        ("target.port", "6379", "spec.target.port must be an integer"),
        ("target.address", KeyError, "spec.target.address is missing"),
        ("target.username", "bench", "spec.target.username needs a password"),
        ("target.extra", 1, "spec.target has unknown field(s): extra"),
        ("timeline.warmup_intervals", -1, "spec.timeline.warmup_intervals must be at least 0"),
        ("timeline.measure_intervals", 0, "spec.timeline.measure_intervals must be at least 1"),
        ("timeline.measure_intervals", 2.5, "spec.timeline.measure_intervals must be an integer"),
        ("timeline.interval_ns", 0, "spec.timeline.interval_ns must be at least 1"),
        ("timeline.interval_ns", 4e12, "spec.timeline.interval_ns must be an integer"),
        ("timeline.interval_ns", 3601 * 10**9, "spec.timeline.interval_ns must be at most"),
        ("timeline.warmup_s", 1.0, "spec.timeline has unknown field(s): warmup_s"),
        ("timeline.drain_ns", -1, "spec.timeline.drain_ns must be at least 0"),
        ("timeline.drain_ns", 601 * 10**9, "spec.timeline.drain_ns must be at most"),
        ("timeline.drain_ns", 1.5, "spec.timeline.drain_ns must be an integer"),
        ("histogram.significant_figures", 9, "significant_figures must be 1..5"),
        ("params", [], "spec.params must be a JSON object"),
        ("surprise", 1, "spec has unknown field(s): surprise"),
    ],
)
def test_a_bad_spec_is_one_config_line_naming_the_field(
    path: str, value: object, message: str
) -> None:
    with pytest.raises(DriverError) as refused:
        parse_spec(spec_with(path, value))
    assert refused.value.kind == "config"
    assert message in refused.value.message
    assert "\n" not in str(refused.value)


def test_a_spec_that_is_not_json_is_refused() -> None:
    with pytest.raises(DriverError, match="config: the load spec is not JSON"):
        parse_spec("{")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("rate", 0, "spec.params.rate must be at least 0.001"),
        ("rate", "fast", "spec.params.rate must be a number"),
        ("arrivals", "bursts", "spec.params.arrivals must be one of constant, poisson"),
        ("timeout", 0, "spec.params.timeout must be at least 0.001"),
        ("busy_poll", -0.001, "spec.params.busy_poll must be at least 0"),
        ("busy_poll", 0.5, "spec.params.busy_poll must be at most 0.01"),
        ("connections", 0, "spec.params.connections must be at least 1"),
        ("processes", 0, "spec.params.processes must be at least 1"),
        ("pipeline", 1.5, "spec.params.pipeline must be an integer"),
        ("set_ratio", 1.1, "spec.params.set_ratio must be at most 1"),
        ("keyspace", 0, "spec.params.keyspace must be at least 1"),
        ("value_size", -1, "spec.params.value_size must be at least 0"),
        ("preload", 1, "spec.params.preload must be true or false"),
        ("typo", 1, "spec.params has unknown field(s): typo"),
    ],
)
def test_bad_builtin_params_are_config_errors(key: str, value: object, message: str) -> None:
    params = dict(SPEC["params"], **{key: value})
    with pytest.raises(DriverError) as refused:
        parse_params(params)
    assert refused.value.kind == "config"
    assert message in refused.value.message


def test_a_seed_may_be_given() -> None:
    assert parse_params(dict(SPEC["params"], seed=42)).seed == 42


def test_a_rate_makes_an_open_loop_with_constant_arrivals_unless_told() -> None:
    assert parse_params(dict(SPEC["params"])).rate is None
    opened = parse_params(dict(SPEC["params"], rate=1500))
    assert (opened.rate, opened.arrivals) == (1500.0, "constant")
    poisson = parse_params(dict(SPEC["params"], rate=2.5, arrivals="poisson"))
    assert (poisson.rate, poisson.arrivals) == (2.5, "poisson")


def test_the_reply_timeout_is_10s_unless_told_and_reaches_every_load_process() -> None:
    from agent.drivers.builtin import BuiltinDriver as AgentBuiltin
    from agent.drivers.worker import WorkerConfig

    assert parse_params(dict(SPEC["params"])).reply_timeout_s == 10.0
    spec = copy.deepcopy(SPEC)
    spec["params"].update(processes=2, connections=4, timeout=0.25)
    plans = AgentBuiltin(cores=2, available_memory=lambda: 1 << 40).plan_load(
        parse_spec(json.dumps(spec)))
    assert [WorkerConfig.from_json(dict(p.config)).reply_timeout_s for p in plans] == [0.25] * 2


def test_busy_polling_is_off_unless_told_reaches_every_load_process_and_is_closed_loop_only(
) -> None:
    from agent.drivers.builtin import BuiltinDriver as AgentBuiltin
    from agent.drivers.worker import WorkerConfig

    assert parse_params(dict(SPEC["params"])).busy_poll_s == 0.0
    spec = copy.deepcopy(SPEC)
    spec["params"].update(processes=2, connections=4, busy_poll=0.0002)
    plans = AgentBuiltin(cores=2, available_memory=lambda: 1 << 40).plan_load(
        parse_spec(json.dumps(spec)))
    assert [WorkerConfig.from_json(dict(p.config)).busy_poll_ns for p in plans] == [200_000] * 2
    with pytest.raises(DriverError, match=r"spec\.params\.busy_poll applies to the closed loop"):
        parse_params(dict(SPEC["params"], busy_poll=0.0002, rate=1000))


def test_the_open_loop_plan_spreads_the_host_connections_over_the_processes() -> None:
    from agent.drivers.builtin import BuiltinDriver as AgentBuiltin
    from agent.drivers.worker import OpenLoopPlan, WorkerConfig

    spec = copy.deepcopy(SPEC)
    spec["params"].update(processes=3, connections=10, rate=1000, arrivals="poisson")
    plans = AgentBuiltin(cores=3, available_memory=lambda: 1 << 40).plan_load(
        parse_spec(json.dumps(spec))
    )
    configs = [WorkerConfig.from_json(dict(p.config)) for p in plans]
    assert [c.open_loop for c in configs] == [
        OpenLoopPlan(1000.0, "poisson", 10, 0),
        OpenLoopPlan(1000.0, "poisson", 10, 4),
        OpenLoopPlan(1000.0, "poisson", 10, 7),
    ]
    assert WorkerConfig.from_json(configs[0].to_json()) == configs[0]


def params(processes: int | None, connections: int, keyspace: int = 10) -> BuiltinParams:
    return BuiltinParams(
        processes=processes,
        connections=connections,
        pipeline=1,
        set_ratio=0.1,
        keyspace=keyspace,
        value_size=3,
        preload=True,
    )


def test_connections_are_spread_over_processes_and_the_keyspace_is_split() -> None:
    assert plan(params(3, 10), cores=8) == [(4, (0, 3)), (3, (3, 6)), (3, (6, 10))]


def test_processes_default_to_the_cores_and_never_outnumber_connections() -> None:
    assert [c for c, _ in plan(params(None, 50), cores=4)] == [13, 13, 12, 12]
    assert [c for c, _ in plan(params(8, 3), cores=4)] == [1, 1, 1]
    assert plan(params(None, 1, keyspace=1), cores=64) == [(1, (0, 1))]


BOUNDED = ["processes", "connections", "pipeline", "set_ratio", "keyspace", "value_size"]


def agent_accepts(name: str, value: object) -> bool:
    try:
        parse_params(dict(SPEC["params"], **{name: value}))
    except DriverError:
        return False
    return True


def inventory_accepts(name: str, value: object) -> bool:
    try:
        InventoryBuiltin.model_validate({name: value})
    except pydantic.ValidationError:
        return False
    return True


@pytest.mark.parametrize("name", BOUNDED)
def test_the_inventory_and_the_agent_share_each_builtin_limit(name: str) -> None:
    limit = getattr(builtin_params, name.upper())
    step = 1 if isinstance(limit.maximum, int) else 1e-9
    for value in (limit.minimum - step, limit.minimum, limit.maximum, limit.maximum + step):
        assert inventory_accepts(name, value) == agent_accepts(name, value), value
    assert agent_accepts(name, limit.maximum) and not agent_accepts(name, limit.maximum + step)


def test_the_start_wait_is_sent_only_when_not_the_default_and_read_strictly() -> None:
    default = Timeline(1_000_000_000, 0, 2)
    assert "start_wait" not in default.to_json()
    assert Timeline.from_json(default.to_json()) == default
    for wait in START_WAITS:
        timeline = Timeline(1_000_000_000, 0, 2, start_wait=wait)
        assert Timeline.from_json(timeline.to_json()) == timeline
    with pytest.raises(DriverError, match=r"spec.timeline.start_wait: 'nap' is not one of"):
        Timeline.from_json({**default.to_json(), "start_wait": "nap"})
