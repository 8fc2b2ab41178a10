"""`coord run` with ``benchmark.driver: redis-benchmark`` on a real lab (``rbm``, two clients):
three repetitions merged from the tool's distributions, counts equal to what each tool reported
and to Redis's own INFO commandstats calls, an arbitrary command, and a client whose PATH has no
redis-benchmark failing in one line before any load."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from coordinator.core.histograms import decode_histogram, merge
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.results import load_results
from tests.helpers import emptied_lab_redis, module_lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="needs redis-benchmark"),
]

ROOT = Path(__file__).parents[2]
NAME = "rbm"
SUBNET = "198.18.206.0/24"
REQUESTS = 2000
TOOL = ["--set", "benchmark.driver=redis-benchmark", "--warmup", "0s", "--duration", "1s",
        "--set", "benchmark.redis_benchmark.clients=4",
        "--set", "benchmark.redis_benchmark.threads=2",
        "--set", f"benchmark.redis_benchmark.requests={REQUESTS}",
        "--set", "baseline.enabled=false"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(LabSpec(name=NAME, clients=2, subnet=SUBNET),
                          tmp_path_factory.mktemp("rbm"))


@pytest.fixture
def server(lab: LabStatus) -> Iterator[redis.Redis]:
    yield from emptied_lab_redis(lab)


def coord(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)


def calls(server: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = server.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def test_three_repetitions_merge_the_tools_distributions_and_count_what_redis_counted(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    out = tmp_path / "results"
    server.config_resetstat()
    result = coord("run", "-i", str(lab.inventory_path), "--out", str(out), *TOOL,
                   "--set", "benchmark.redis_benchmark.tests=[set,get]")
    assert result.returncode == 0, result.stderr
    counted = calls(server)
    document = load_results(out / "results.json")
    assert document.status == "complete"
    assert len(document.repetitions) == 3
    for client in ("client1", "client2"):
        record = next(a.ran_with for a in document.agents if a.host == client)
        assert record is not None
        assert (record.driver, record.connections, record.pipeline) == ("redis-benchmark", 4, 1)
        assert record.driver_version.startswith("redis-benchmark ")
        assert "requests as given" in record.driver_version
    for repetition in document.repetitions:
        assert repetition.window.intervals == 1  # the tool's whole run, no invented intervals
        # each tool reported REQUESTS per test: that is each agent's count
        assert [agent.count for agent in repetition.agents] == [2 * REQUESTS] * 2
        assert set(repetition.commands) == {"SET", "GET"}
        assert all(c.count == 2 * REQUESTS for c in repetition.commands.values())
        merged = merge([decode_histogram(agent.histogram) for agent in repetition.agents])
        assert merged.get_total_count() + repetition.overflow == repetition.count
        assert repetition.latency_usec.p50 <= repetition.latency_usec.p99
        assert all(agent.latency_usec.p99 > 0 for agent in repetition.agents)
        # `requests` given: each agent's ops/s is its count over its tool's own run (not over
        # --duration's 1 s); merged, the sum of those; the window, the runs' union span.
        runs = [agent.window_seconds for agent in repetition.agents]
        assert all(run is not None and run > 0 for run in runs), runs
        for agent in repetition.agents:
            assert agent.window_seconds is not None
            assert agent.ops_per_sec == pytest.approx(agent.count / agent.window_seconds)
        assert repetition.ops_per_sec == pytest.approx(
            sum(agent.ops_per_sec for agent in repetition.agents))
        assert repetition.window.seconds >= max(run or 0 for run in runs)
    total = sum(repetition.count for repetition in document.repetitions)
    assert total == 3 * 2 * 2 * REQUESTS == counted["set"] + counted["get"]
    assert document.summary is not None and document.summary.ops_per_sec.median > 0


def test_an_arbitrary_command_with_a_random_field_runs(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    out = tmp_path / "hset"
    server.config_resetstat()
    result = coord("run", "-i", str(lab.inventory_path), "--out", str(out), *TOOL,
                   "--repetitions", "1",
                   "--set", "benchmark.redis_benchmark.command=[HSET,h,'f:__rand_int__',v]",
                   "--set", "benchmark.redis_benchmark.keyspace=1000")
    assert result.returncode == 0, result.stderr
    (repetition,) = load_results(out / "results.json").repetitions
    assert set(repetition.commands) == {"HSET"}
    assert repetition.count == 2 * REQUESTS == calls(server)["hset"]
    assert 1 < int(server.hlen("h")) <= 1000


def test_a_client_without_redis_benchmark_on_its_path_fails_in_one_line(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    # the agent's interpreter, started with a PATH that holds no redis-benchmark
    wrapper_dir = Path(tempfile.mkdtemp(prefix="coord-rbm-"))
    try:
        wrapper_dir.chmod(0o755)
        wrapper = wrapper_dir / "python3"
        wrapper.write_text(f"#!/bin/sh\nPATH={wrapper_dir} exec /usr/bin/python3 \"$@\"\n")
        wrapper.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        inventory = yaml.safe_load(lab.inventory_path.read_text())
        for host in inventory["hosts"]:
            if host["name"] == "client2":
                host["python"] = str(wrapper)
        path = tmp_path / "no-tool.yaml"
        path.write_text(yaml.safe_dump(inventory))
        server.config_resetstat()
        result = coord("run", "-i", str(path), "--out", str(tmp_path / "r"), *TOOL)
    finally:
        shutil.rmtree(wrapper_dir)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    problem = [line for line in lines if "redis-benchmark is not on PATH" in line]
    assert len(problem) == 1, result.stderr
    assert "client2" in problem[0] and "apt-get install redis-tools" in problem[0]
    assert "Traceback" not in result.stderr
    assert calls(server).get("set", 0) == 0  # no load started anywhere
