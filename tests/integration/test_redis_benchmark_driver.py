"""The redis-benchmark driver on the kit, against a loopback redis-server: one measure interval
per run, counts equal to Redis's INFO commandstats calls, calibration, warm-up as a separate
run, the missing binary, an unreachable target, a stop, nothing left running."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from agent.drivers.base import DriverError
from agent.drivers.redis_benchmark import RedisBenchmarkDriver
from agent.drivers.spec import parse_spec
from agent.histograms import decode
from tests.external_tools import (
    DEADLINE,
    START_MARGIN_NS,
    closed_after,
    run_to_end,
    start_soon,
    tool_spec,
)
from tests.external_tools import commandstats as redis_calls
from tests.helpers import poll_until, process_gone
from tests.integration.test_builtin_driver import PASSWORD, RedisServer, free_port, redis_server

__all__ = ["redis_server"]

pytestmark = pytest.mark.skipif(
    shutil.which("redis-benchmark") is None or shutil.which("redis-server") is None,
    reason="needs redis-benchmark and redis-server on PATH",
)


def make_spec(port: int, *, password: str | None = PASSWORD, warmup_s: float = 0.0,
              duration_s: float = 1.0, **params: Any) -> str:
    tool = {
        "tests": ["set", "get"], "command": None, "clients": 4, "threads": 2, "pipeline": 2,
        "value_size": 8, "keyspace": 500, "requests": 3000, "precision": 3,
        "warmup_s": warmup_s,
    }  # fmt: skip
    tool.update(params)
    warmup_intervals = -(-round(warmup_s * 1e9) // round(duration_s * 1e9))
    return tool_spec("redis-benchmark", port, tool, password=password, interval_s=duration_s,
                     warmup_intervals=warmup_intervals)


@pytest.fixture
def driver() -> Iterator[RedisBenchmarkDriver]:
    yield from closed_after(RedisBenchmarkDriver())


def commandstats(server: RedisServer) -> dict[str, int]:
    with server.client() as client:
        return redis_calls(client)


def started_tool(driver: RedisBenchmarkDriver) -> int:
    """The pid of the redis-benchmark the driver's one load process runs, once it runs."""
    (load_pid,) = driver.worker_pids()

    def tool_pids() -> list[int]:
        try:
            return [child.pid for child in psutil.Process(load_pid).children()]
        except psutil.NoSuchProcess:
            return []

    poll_until(lambda: bool(tool_pids()), DEADLINE, "redis-benchmark to start")
    (tool_pid,) = tool_pids()
    return tool_pid


def test_one_measure_interval_whose_counts_are_the_servers_calls(
    driver: RedisBenchmarkDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server(password=PASSWORD)
    with server.client() as client:
        client.config_resetstat()
    report = run_to_end(driver, make_spec(server.port))
    calls = commandstats(server)
    assert driver.state.value == "finished"
    assert len(report.intervals) == 1
    (interval,) = report.intervals
    assert (interval.index, interval.phase, interval.complete) == (0, "measure", True)
    assert {name: c.count for name, c in interval.commands.items()} == {"GET": 3000, "SET": 3000}
    assert calls["set"] == calls["get"] == 3000
    assert interval.requests == 6000 and not interval.errors
    recorded = sum(decode(c.histogram).get_total_count()
                   for c in interval.commands.values())
    assert recorded + interval.overflow == 6000
    assert report.t0_ns <= report.started_ns <= report.stopped_ns


def test_an_arbitrary_command_with_rand_int_runs(
    driver: RedisBenchmarkDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server(password=PASSWORD)
    report = run_to_end(driver, make_spec(
        server.port, tests=None, command=["HSET", "h", "f:__rand_int__", "v"], requests=2000))
    (interval,) = report.intervals
    assert {name: c.count for name, c in interval.commands.items()} == {"HSET": 2000}
    assert commandstats(server)["hset"] == 2000
    with server.client() as client:
        assert 1 < client.hlen("h") <= 500


def test_requests_sized_by_calibration_and_warmup_run_apart(
    driver: RedisBenchmarkDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server(password=PASSWORD)
    prepared = driver.prepare(parse_spec(make_spec(
        server.port, tests=["set"], requests=None, warmup_s=0.25, duration_s=0.5)))
    assert "sized by calibration" in prepared.driver_version
    assert prepared.driver_version.startswith("redis-benchmark ")
    calibrated = commandstats(server)["set"]
    driver.start_at(time.time_ns() + START_MARGIN_NS)
    poll_until(lambda: driver.state.done, DEADLINE, "the load to end")
    report = driver.report()
    (interval,) = report.intervals
    assert (interval.index, interval.phase) == (1, "measure")  # after one warm-up interval
    measured = interval.commands["SET"].count
    sized = int(prepared.driver_version.split("-n ")[1].split()[0])
    assert measured == sized
    warmup = commandstats(server)["set"] - calibrated - measured
    assert 0 < warmup < measured  # the separate warm-up run: half the measure's length


def test_a_missing_binary_is_one_line_before_any_process_starts(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server(password=PASSWORD)
    driver = RedisBenchmarkDriver(which=lambda name: None)
    with pytest.raises(DriverError) as caught:
        driver.prepare(parse_spec(make_spec(server.port)))
    assert caught.value.kind == "config"
    assert "redis-benchmark is not on PATH" in caught.value.message
    assert "apt-get install redis-tools" in caught.value.message
    assert driver.worker_pids() == []


def test_an_unreachable_target_fails_in_prepare_instead_of_spinning(
    driver: RedisBenchmarkDriver,
) -> None:
    with pytest.raises(DriverError) as caught:
        driver.prepare(parse_spec(make_spec(free_port())))
    assert caught.value.kind == "unreachable"


def test_an_error_reply_fails_the_load_in_one_line(
    driver: RedisBenchmarkDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server(password=PASSWORD)
    with server.client() as client:
        client.set("h", "a string")
    start_soon(driver, make_spec(server.port, tests=None, command=["HSET", "h", "f", "v"]))
    poll_until(lambda: driver.state.done, DEADLINE, "the load to end")
    assert driver.state.value == "failed"
    problem = driver.progress().problem or ""
    assert "server: redis-benchmark measured run exited with status 1" in problem
    assert "WRONGTYPE" in problem and "\n" not in problem


def test_a_stop_kills_the_tool_and_leaves_nothing_running(
    driver: RedisBenchmarkDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server(password=PASSWORD)
    start_soon(driver, make_spec(server.port, tests=["ping_mbulk"], requests=10**9,
                                 duration_s=60.0, clients=2, threads=1))
    tool_pid = started_tool(driver)
    driver.stop()
    assert driver.state.value == "stopped"
    poll_until(lambda: process_gone(tool_pid), DEADLINE, "redis-benchmark to end")


def test_a_tool_killed_from_outside_is_a_tool_failure_not_the_servers(
    driver: RedisBenchmarkDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server(password=PASSWORD)
    start_soon(driver, make_spec(server.port, tests=["ping_mbulk"], requests=10**9,
                                 duration_s=60.0, clients=2, threads=1))
    tool_pid = started_tool(driver)
    os.kill(tool_pid, signal.SIGKILL)  # the tool dies on its own: the server said nothing
    poll_until(lambda: driver.state.done, DEADLINE, "the load to end")
    assert driver.state.value == "failed"
    problem = driver.progress().problem or ""
    assert "tool: redis-benchmark measured run ended by signal 9" in problem, problem
    assert "server:" not in problem
