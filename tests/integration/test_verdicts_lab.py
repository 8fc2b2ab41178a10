"""Host verdicts of real runs on labs: clients held to 0.2 of a core are client-bound (their
throttling and their load process's CPU as evidence) and fail ``coord run --strict`` with
status 3; unrestricted clients against a server held to 0.2 of a core make it server-bound,
and not client-bound.

Needs root. Two labs, built when first used and always torn down: ``vrd``
(198.18.203.0/24, ``--client-cpu 0.2``) and ``vrd2`` (198.18.213.0/24, ``--server-cpu 0.2``).
Every lab host reads one machine's /proc/stat, shared with whatever else runs on it: the
tests judge the hosts by what is theirs (cgroup throttling, their processes' CPU), not by the
host's total CPU (``client_cpu_percent`` set to 100, never exceeded).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.core import marks
from coordinator.core.verdict_records import Verdict
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.results import load_results
from tests.helpers import module_lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

CPU = 0.2
COORD = Path(sys.executable).with_name("coord")
SHORT = [
    "--repetitions", "1", "--warmup", "1s", "--duration", "3s", "--no-baseline",
    "--set", "benchmark.interval=500ms", "--set", "benchmark.builtin.connections=16",
    "--set", "benchmark.builtin.keyspace=10000",
    "--set", "benchmark.thresholds.client_cpu_percent=100",
]  # fmt: skip
"""1 repetition of 3 s at 500 ms intervals (6 in the window; a verdict is per repetition). A
small keyspace keeps the request pool small: each load process builds it before the load, at
the client's fifth of a core."""


@pytest.fixture(scope="module")
def client_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    spec = LabSpec(name="vrd", clients=2, subnet="198.18.203.0/24", client_cpu=CPU)
    yield from module_lab(spec, tmp_path_factory.mktemp("vrd"))


@pytest.fixture(scope="module")
def server_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    spec = LabSpec(name="vrd2", clients=2, subnet="198.18.213.0/24", server_cpu=CPU)
    yield from module_lab(spec, tmp_path_factory.mktemp("vrd2"))


def coord_run(lab: LabStatus, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(COORD), "run", "-i", str(lab.inventory_path), "--out", str(out), *SHORT, *options],
        capture_output=True, text=True, timeout=600, check=False)
    print(result.stdout[-6000:], result.stderr[-2000:])
    return result


def verdicts_of(out: Path, name: str) -> list[Verdict]:
    return [v for r in load_results(out).repetitions for v in r.verdicts if v.name == name]


def test_clients_held_to_a_fifth_of_a_core_are_client_bound_and_fail_strict(
    client_lab: LabStatus, tmp_path: Path
) -> None:
    assert client_lab.healthy, client_lab.problems
    out = tmp_path / "run"
    # one load process per client, one request at a time per connection (the client's work
    # per request at its most): at 0.2 of a core it cannot pass ~20 % of one, so 10 % is its
    # saturation here (the default, 95 %, is for a process with a core of its own)
    result = coord_run(client_lab, out, "--strict", "--set", "benchmark.builtin.processes=1",
                       "--set", "benchmark.builtin.pipeline=1",
                       "--set", "benchmark.thresholds.process_cpu_percent=10")
    assert result.returncode == 3, result.stderr
    bound = verdicts_of(out, marks.CLIENT_BOUND.name)
    assert len(bound) == 2  # 1 repetition x 2 clients
    for verdict in bound:
        assert verdict.state == "flagged", verdict.summary
        assert verdict.summary.startswith(f"{verdict.hosts[0]} was the bottleneck: ")
        metrics = {e.metric for e in verdict.evidence}
        assert "cgroup_throttled_periods" in metrics, verdict.summary
        assert any(m.startswith("load_process_cpu_percent[1 (") for m in metrics), metrics
        print("evidence:", verdict.summary)
    strict = [line for line in result.stderr.splitlines() if line.startswith("--strict: ")]
    assert any(": client-bound: client1 was the bottleneck: " in line for line in strict), strict
    assert any(": client-bound: client2 was the bottleneck: " in line for line in strict), strict
    server = verdicts_of(out, marks.SERVER_BOUND.name)
    assert all(v.state == "clear" and "ran out of CPU first" in v.summary for v in server)


def test_a_server_held_to_a_fifth_of_a_core_is_server_bound_and_no_client_is(
    server_lab: LabStatus, tmp_path: Path
) -> None:
    assert server_lab.healthy, server_lab.problems
    out = tmp_path / "run"
    # pipelined: the server's work per request at its most, the clients' at its least
    result = coord_run(server_lab, out, "--set", "benchmark.builtin.processes=2",
                       "--set", "benchmark.builtin.pipeline=32")
    assert result.returncode == 0, result.stderr
    for verdict in verdicts_of(out, marks.CLIENT_BOUND.name):
        assert verdict.state == "clear", verdict.summary
    bound = verdicts_of(out, marks.SERVER_BOUND.name)
    assert len(bound) == 1
    for verdict in bound:
        assert verdict.state == "flagged", verdict.summary
        assert verdict.summary.startswith("good news: the server on server was the bottleneck")
        (evidence,) = verdict.evidence
        assert evidence.metric == "server_process_cpu_percent_of_usable"
        assert f"of its {CPU:g} core(s)" in evidence.detail
        print("evidence:", verdict.summary)
    assert "server-bound" in result.stdout
