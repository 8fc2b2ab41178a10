"""The memtier driver on the kit, against a loopback redis-server: two --commands, one measure
interval whose per-command counts equal memtier's JSON totals and Redis's INFO commandstats
calls, the warm-up as a separate run, the missing binary in one line."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.drivers.base import DriverError
from agent.drivers.memtier import MemtierDriver
from agent.drivers.spec import parse_spec
from agent.histograms import decode
from tests.external_tools import (
    DEADLINE,
    START_MARGIN_NS,
    closed_after,
    run_to_end,
    tool_spec,
)
from tests.external_tools import commandstats as redis_calls
from tests.helpers import poll_until
from tests.integration.test_builtin_driver import PASSWORD, RedisServer, redis_server

__all__ = ["redis_server"]

pytestmark = pytest.mark.skipif(
    shutil.which("memtier_benchmark") is None or shutil.which("redis-server") is None,
    reason="needs memtier_benchmark and redis-server on PATH",
)
COMMANDS = [
    {"command": "HSET h __key__ __data__", "ratio": 1, "key_pattern": "R"},
    {"command": "GET __key__", "ratio": 1, "key_pattern": "R"},
]


def make_spec(port: int, *, warmup_s: float = 0.0, **params: Any) -> str:
    tool = {
        "threads": 2, "clients": 3, "pipeline": 2, "ratio": None, "commands": COMMANDS,
        "key_pattern": "R:R", "key_minimum": 1, "key_maximum": 500, "data_size": 8,
        "test_time": None, "requests": 400, "rate_limiting": None, "warmup_s": warmup_s,
    }  # fmt: skip
    tool.update(params)
    return tool_spec("memtier", port, tool, password=PASSWORD, interval_s=0.5,
                     warmup_intervals=1 if warmup_s else 0)


@pytest.fixture
def driver() -> Iterator[MemtierDriver]:
    yield from closed_after(MemtierDriver())


def commandstats(server: RedisServer) -> dict[str, int]:
    with server.client() as client:
        return redis_calls(client)


def test_two_commands_one_interval_counts_equal_the_servers_calls(
    driver: MemtierDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server(password=PASSWORD)
    with server.client() as client:
        client.config_resetstat()
    spec = parse_spec(make_spec(server.port))
    prepared = driver.prepare(spec)
    assert (prepared.connections, prepared.pipeline) == (6, 2)
    assert prepared.driver_version.startswith("memtier_benchmark")
    t0_ns = time.time_ns() + START_MARGIN_NS
    driver.start_at(t0_ns)
    poll_until(lambda: driver.state.done, DEADLINE, "the load to end")
    report = driver.report()
    calls = commandstats(server)
    assert driver.state.value == "finished"
    (interval,) = report.intervals
    assert (interval.index, interval.phase, interval.complete) == (0, "measure", True)
    counts = {name: c.count for name, c in interval.commands.items()}
    assert counts == {"HSET": calls["hset"], "GET": calls["get"]}
    assert sum(counts.values()) == 2 * 3 * 400 == interval.requests
    recorded = sum(decode(c.histogram).get_total_count() for c in interval.commands.values())
    assert recorded + interval.overflow == interval.requests
    assert report.started_ns >= t0_ns - 1_000_000  # memtier's own start, in ms


def test_the_warmup_is_a_separate_unmeasured_run(
    driver: MemtierDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server(password=PASSWORD)
    (interval,) = run_to_end(driver, make_spec(server.port, warmup_s=0.5)).intervals
    assert (interval.index, interval.phase) == (1, "measure")
    calls = commandstats(server)
    assert calls["hset"] + calls["get"] == 2 * interval.requests  # warm-up: the same run again


def test_a_missing_binary_is_one_line_before_any_process_starts(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server(password=PASSWORD)
    driver = MemtierDriver(which=lambda name: None)
    with pytest.raises(DriverError) as caught:
        driver.prepare(parse_spec(make_spec(server.port)))
    assert "memtier_benchmark is not on PATH" in caught.value.message
    assert "\n" not in caught.value.message and driver.worker_pids() == []


def test_a_target_gone_after_prepare_is_unreachable_not_a_bad_report(
    driver: MemtierDriver,
) -> None:
    """memtier that cannot connect retries, gives up and exits 0 with an empty report: the
    failure names the target and memtier's reason, not its report."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    spec = make_spec(port, threads=1, clients=1, requests=10)
    driver.prepare(parse_spec(spec))  # its check connects: the port listens
    listener.close()  # then nothing listens there
    driver.start_at(time.time_ns() + START_MARGIN_NS)
    poll_until(lambda: driver.state.done, DEADLINE, "the load to end")
    assert driver.state.value == "failed"
    problem = driver.progress().problem or ""
    assert problem.endswith(f"unreachable: memtier_benchmark could not connect to "
                            f"127.0.0.1:{port}: Connection refused"), problem
