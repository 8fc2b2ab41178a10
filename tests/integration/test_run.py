"""`coord run` on a real lab: synchronized repetitions, merging, errors, stalls, Ctrl-C.

Needs root. One lab (``crun`` on 198.18.121.0/24: two clients and a server with real Redis)
for the module, always torn down. Short phases keep the module around a minute.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from coordinator.core.histograms import decode_histogram, merge
from coordinator.inventory.loader import load_inventory
from coordinator.lab.api import LabSpec, LabStatus, lab_down, lab_up
from coordinator.results import load_results
from coordinator.run.runner import run_benchmark
from tests.helpers import MeasureView, emptied_lab_redis, wait_for_line

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
NAME = "crun"
SUBNET = "198.18.121.0/24"
QUICK = ["--warmup", "500ms", "--duration", "1s", "--set", "benchmark.interval=500ms",
         "--set", "benchmark.builtin.connections=4", "--set", "benchmark.builtin.processes=1",
         "--no-baseline"]  # test_baseline.py measures baselines


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    lab_down(NAME)
    path = tmp_path_factory.mktemp("run") / "lab.yaml"
    try:
        yield lab_up(LabSpec(name=NAME, clients=2, subnet=SUBNET), path)
    finally:
        lab_down(NAME)


@pytest.fixture
def server(lab: LabStatus) -> Iterator[redis.Redis]:
    """A client of the lab's Redis from the root namespace (through the lab bridge)."""
    yield from emptied_lab_redis(lab)


def coord(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)




def test_three_synchronized_repetitions_merge_exactly(lab: LabStatus, tmp_path: Path,
                                                      server: redis.Redis) -> None:
    out = tmp_path / "results"
    result = coord("run", "-i", str(lab.inventory_path), "--out", str(out), *QUICK)
    assert result.returncode == 0, result.stderr
    assert "summary over 3 repetition(s)" in result.stdout
    document = load_results(out / "results.json")
    assert document.status == "complete"
    assert len(document.repetitions) == 3
    assert {agent.host for agent in document.agents} == {"server", "client1", "client2"}
    ran_with = {agent.host: agent.ran_with for agent in document.agents}
    assert ran_with["server"] is None
    for client in ("client1", "client2"):
        record = ran_with[client]
        assert record is not None
        assert (record.driver, record.processes, record.connections, record.pipeline) == (
            "builtin", 1, 4, 1)
        assert record.interpreter.startswith("CPython 3.")
        assert record.driver_version.startswith("coord ")
    for repetition in document.repetitions:
        assert repetition.count > 0
        assert repetition.count == sum(agent.count for agent in repetition.agents)
        assert {agent.host for agent in repetition.agents} == {"client1", "client2"}
        merged = merge([decode_histogram(agent.histogram) for agent in repetition.agents])
        assert merged.get_total_count() == decode_histogram(repetition.histogram)\
            .get_total_count() == repetition.count
        assert repetition.start_skew_usec >= 0
        assert repetition.window.intervals == 2
        assert (out / repetition.hgrm).read_text().lstrip().startswith("Value")
    assert document.summary is not None
    assert document.summary.repetitions == 3
    assert document.summary.ops_per_sec.median > 0


def test_a_server_stall_shows_in_the_max_latency(lab: LabStatus, tmp_path: Path,
                                                 server: redis.Redis) -> None:
    loaded = load_inventory(lab.inventory_path, [
        "baseline.enabled=false",
        "benchmark.repetitions=1", "benchmark.warmup=1s", "benchmark.duration=3s",
        "benchmark.builtin.connections=4", "benchmark.builtin.processes=1",
    ])
    view = MeasureView()
    failures: list[BaseException] = []

    def pause_when_measuring() -> None:
        try:
            assert view.measuring.wait(60), "the measure phase never started"
            server.execute_command("CLIENT", "PAUSE", 500)
        except BaseException as exc:  # noqa: BLE001 - reported by the test body
            failures.append(exc)

    pauser = threading.Thread(target=pause_when_measuring)
    pauser.start()
    outcome = run_benchmark(loaded, tmp_path / "stall", view)
    pauser.join(10)
    assert not failures, failures
    repetition = outcome.document.repetitions[0]
    assert outcome.document.status == "complete"
    assert repetition.latency_usec.max >= 500_000
    assert repetition.latency_usec.p50 < 500_000


def test_wrong_type_errors_are_counted_by_type_and_the_run_completes(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    for key in range(10):
        server.rpush(f"key:{key}", "not a string")
    out = tmp_path / "wrongtype"
    result = coord("run", "-i", str(lab.inventory_path), "--out", str(out), *QUICK,
                   "--repetitions", "1", "--set", "benchmark.builtin.keyspace=10",
                   "--set", "benchmark.builtin.set_ratio=0")
    assert result.returncode == 0, result.stderr
    repetition = load_results(out / "results.json").repetitions[0]
    assert repetition.errors.get("WRONGTYPE", 0) > 0
    assert set(repetition.errors) == {"WRONGTYPE"}
    assert "error-rate-above-threshold" in repetition.marks
    document = load_results(out / "results.json")
    assert "fewer-than-3-repetitions" in document.marks


def test_ctrl_c_in_the_second_repetition_keeps_the_first(lab: LabStatus, tmp_path: Path,
                                                         server: redis.Redis) -> None:
    out = tmp_path / "interrupted"
    process = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "run", "-i", str(lab.inventory_path),
         "--out", str(out), *QUICK, "--duration", "4s"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        wait_for_line(process.stderr, "repetition 1:", timeout=120)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "1 finished repetition(s) kept in" in err
    assert "Traceback" not in err
    document = load_results(out / "results.json")
    assert document.status == "interrupted"
    assert [repetition.index for repetition in document.repetitions] == [1]
    assert "interrupted" in document.marks


def test_a_wrong_password_fails_before_any_load_with_one_line(lab: LabStatus, tmp_path: Path,
                                                             server: redis.Redis) -> None:
    before = server.info("stats")["total_commands_processed"]
    wrong = tmp_path / "wrong.password"
    wrong.write_text("wrong\n")
    result = coord("run", "-i", str(lab.inventory_path), "--out", str(tmp_path / "auth"),
                   *QUICK, "--set", f"servers[0].password_file={wrong}")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("client1, client2: cannot authenticate to ")
    after = server.info("stats")["total_commands_processed"]
    assert after - before < 20  # AUTH attempts and our INFO, no load


def test_fewer_than_three_repetitions_need_the_option(lab: LabStatus, tmp_path: Path) -> None:
    text = yaml.safe_load(lab.inventory_path.read_text())
    text["benchmark"]["repetitions"] = 1
    path = tmp_path / "once.yaml"
    path.write_text(yaml.safe_dump(text))
    result = coord("run", "-i", str(path), "--out", str(tmp_path / "once"))
    assert result.returncode == 2
    assert "pass --repetitions 1" in result.stderr
