"""The redis-benchmark command line coord builds, run for real against a loopback
redis-server, read back by coord's parser: the requests the tool reports are the calls Redis
counted (INFO commandstats), per test and for an arbitrary command."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from agent.drivers.redis_benchmark_command import command_line, parse_params
from agent.drivers.redis_benchmark_output import read_errors, read_report
from agent.drivers.spec import Target
from agent.histograms import HistogramParams
from tests.integration.test_builtin_driver import PASSWORD, RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture, shared with the builtin driver's tests

pytestmark = pytest.mark.skipif(
    shutil.which("redis-benchmark") is None or shutil.which("redis-server") is None,
    reason="needs redis-benchmark and redis-server on PATH",
)
#: A bound on one small run of the tool (it spins forever on a refused connection).
TOOL_BOUND_S = 120


def run_tool(server: RedisServer, **params: Any) -> subprocess.CompletedProcess[str]:
    spec_params = {
        "tests": None, "command": None, "clients": 4, "threads": 2, "pipeline": 2,
        "value_size": 8, "keyspace": 500, "requests": 3000, "precision": 3,
    }  # fmt: skip
    spec_params.update(params)
    target = Target(address="127.0.0.1", port=server.port, password=server.password)
    argv = command_line(parse_params(spec_params), target)
    return subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_BOUND_S, check=False)


def calls(server: RedisServer, command: str) -> int:
    with server.client() as client:
        stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_tests_requests_equal_the_servers_calls(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server(password=PASSWORD)
    done = run_tool(server, tests=["set", "get"])
    assert done.returncode == 0, done.stderr
    tests = read_report(done.stdout)
    assert [test.name for test in tests] == ["SET", "GET"]
    assert all(test.threads == 2 and test.clients == 4 for test in tests)
    assert [test.requests for test in tests] == [calls(server, "set"), calls(server, "get")]
    for test in tests:
        histogram, overflow = test.histogram(HistogramParams())
        assert histogram.get_total_count() + overflow == test.requests == 3000


def test_an_arbitrary_command_with_a_placeholder_runs(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server(password=PASSWORD)
    done = run_tool(server, command=["HSET", "h", "f:__rand_int__", "v"])
    assert done.returncode == 0, done.stderr
    (test,) = read_report(done.stdout)
    assert test.name == "HSET h f:__rand_int__ v"
    assert test.requests == calls(server, "hset") == 3000
    with server.client() as client:
        assert 1 < client.hlen("h") <= 500  # __rand_int__ was replaced below the keyspace


def test_a_wrong_password_is_an_error_line(redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server(password=PASSWORD)
    server.password = "wrong"
    done = run_tool(server, tests=["ping"])
    assert done.returncode != 0
    errors = read_errors(done.stderr)
    assert errors.first is not None and errors.any
