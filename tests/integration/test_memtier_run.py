"""`coord run` with ``benchmark.driver: memtier`` on a real lab (``mtr``, two clients): three
repetitions with two --commands, per-command histograms merged, counts equal to memtier's JSON
totals and Redis's INFO commandstats calls, and a client whose PATH has no memtier_benchmark
failing in one line before any load."""

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
    pytest.mark.skipif(shutil.which("memtier_benchmark") is None, reason="needs memtier"),
]

ROOT = Path(__file__).parents[2]
NAME = "mtr"
SUBNET = "198.18.216.0/24"
THREADS, CLIENTS, REQUESTS = 2, 2, 200
PER_CLIENT = THREADS * CLIENTS * REQUESTS
TOOL = ["--set", "benchmark.driver=memtier", "--warmup", "0s", "--duration", "1s",
        "--set", f"benchmark.memtier.threads={THREADS}",
        "--set", f"benchmark.memtier.clients={CLIENTS}",
        "--set", f"benchmark.memtier.requests={REQUESTS}",
        "--set", "benchmark.memtier.commands=[{command: 'HSET h __key__ __data__'}, "
                 "{command: 'GET __key__'}]",
        "--set", "baseline.enabled=false"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(LabSpec(name=NAME, clients=2, subnet=SUBNET),
                          tmp_path_factory.mktemp("mtr"))


@pytest.fixture
def server(lab: LabStatus) -> Iterator[redis.Redis]:
    yield from emptied_lab_redis(lab)


def coord(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)


def calls(server: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = server.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def test_two_commands_three_repetitions_merged_per_command(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    out = tmp_path / "results"
    server.config_resetstat()
    result = coord("run", "-i", str(lab.inventory_path), "--out", str(out), *TOOL)
    assert result.returncode == 0, result.stderr
    counted = calls(server)
    document = load_results(out / "results.json")
    assert document.status == "complete" and len(document.repetitions) == 3
    for repetition in document.repetitions:
        assert repetition.window.intervals == 1
        # memtier's JSON totals: every connection's requests (each agent's count is them)
        assert [agent.count for agent in repetition.agents] == [PER_CLIENT] * 2
        assert set(repetition.commands) == {"HSET", "GET"}
        assert sum(c.count for c in repetition.commands.values()) == 2 * PER_CLIENT
        for command in repetition.commands.values():
            assert decode_histogram(command.histogram).get_total_count() == command.count
        merged = merge([decode_histogram(agent.histogram) for agent in repetition.agents])
        assert merged.get_total_count() == repetition.count
        # `requests` given: each agent's ops/s is its count over memtier's own run (its
        # JSON's start to finish, not --duration's 1 s); merged, the sum of those; the window,
        # the runs' union span.
        runs = [agent.window_seconds for agent in repetition.agents]
        assert all(run is not None and run > 0 for run in runs), runs
        for agent in repetition.agents:
            assert agent.window_seconds is not None
            assert agent.ops_per_sec == pytest.approx(agent.count / agent.window_seconds)
        assert repetition.ops_per_sec == pytest.approx(
            sum(agent.ops_per_sec for agent in repetition.agents))
        assert repetition.window.seconds >= max(run or 0 for run in runs)
    hsets = sum(r.commands["HSET"].count for r in document.repetitions)
    gets = sum(r.commands["GET"].count for r in document.repetitions)
    assert (hsets, gets) == (counted["hset"], counted["get"])
    assert hsets + gets == 3 * 2 * PER_CLIENT


def test_a_client_without_memtier_on_its_path_fails_in_one_line(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    wrapper_dir = Path(tempfile.mkdtemp(prefix="coord-mtr-"))
    try:
        wrapper_dir.chmod(0o755)
        wrapper = wrapper_dir / "python3"
        wrapper.write_text(f'#!/bin/sh\nPATH={wrapper_dir} exec /usr/bin/python3 "$@"\n')
        wrapper.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        inventory = yaml.safe_load(lab.inventory_path.read_text())
        for host in inventory["hosts"]:
            if host["name"] == "client1":
                host["python"] = str(wrapper)
        path = tmp_path / "no-tool.yaml"
        path.write_text(yaml.safe_dump(inventory))
        server.config_resetstat()
        result = coord("run", "-i", str(path), "--out", str(tmp_path / "r"), *TOOL)
    finally:
        shutil.rmtree(wrapper_dir)
    assert result.returncode == 1, result.stderr
    problem = [line for line in result.stderr.splitlines()
               if "memtier_benchmark is not on PATH" in line]
    assert len(problem) == 1, result.stderr
    assert "client1" in problem[0] and "Traceback" not in result.stderr
    assert calls(server).get("hset", 0) == 0
