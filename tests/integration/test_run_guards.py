"""`coord run` refusing what would hurt the hosts or the measurement, on a real lab: a load the
clients have no memory for, and a second run on hosts another run holds.

Needs root. One lab (``crlk`` on 198.18.152.0/24: two clients and a server with real Redis) for
the module, always torn down.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from agent.runlock import lock_name
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.results import load_results
from tests.helpers import emptied_lab_redis, module_lab, poll_until

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
SPEC = LabSpec(name="crlk", clients=2, subnet="198.18.152.0/24")
QUICK = ["--warmup", "500ms", "--duration", "1s", "--repetitions", "1",
         "--set", "benchmark.builtin.connections=4", "--set", "benchmark.builtin.processes=1",
         "--no-baseline"]  # test_baseline.py measures baselines
LOAD_CONNECTIONS = 2 * 4  # two clients, four connections each
DEADLINE = 120.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    locks: list[Path] = []
    for status in module_lab(SPEC, tmp_path_factory.mktemp("guards")):
        locks = [Path("/run/lock") / lock_name(Path("/run/netns", host.namespace).stat().st_ino)
                 for host in status.hosts]
        yield status
    leftovers = [str(path) for path in locks if path.exists()]
    assert not leftovers, f"lab down left run locks behind: {leftovers}"


@pytest.fixture
def server(lab: LabStatus) -> Iterator[redis.Redis]:
    yield from emptied_lab_redis(lab)


def coord(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


def error_lines(stderr: str) -> list[str]:
    """stderr without the warning a single repetition earns."""
    return [line for line in stderr.strip().splitlines() if ": warning: " not in line]


def lab_processes() -> list[psutil.Process]:
    """Processes of the lab's users other than their sshd and the lab's Redis (agents, load
    processes)."""
    found = []
    for process in psutil.process_iter(["username", "name"]):
        user = process.info["username"] or ""
        lab_service = process.info["name"] in {"sshd", "redis-server"}
        if user.startswith(f"{SPEC.name}-") and not lab_service:
            found.append(process)
    return found


def nothing_left_running() -> None:
    poll_until(lambda: not lab_processes(), 30, "the lab hosts' agents to exit")


def test_a_load_the_clients_have_no_memory_for_is_refused_with_one_line(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    before = server.info("stats")["total_commands_processed"]
    out = tmp_path / "huge"
    # 512 MiB values over 64 connections: each connection's batch in flight alone is 0.5 GiB
    # (large values are encoded per batch, not pooled), about 96 GiB in all.
    result = coord("run", "-i", str(lab.inventory_path), "--out", str(out), *QUICK,
                   "--set", f"benchmark.builtin.value_size={512 * 1024 * 1024}",
                   "--set", "benchmark.builtin.connections=64")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert 1 <= len(lines) <= 2, lines  # two if the clients saw different free memory
    pattern = (r"client\d(, client\d)?: the load needs about [\d.]+ [GT]iB of memory in 1 load "
               r"process\(es\), but this host has [\d.]+ GiB available; lower value_size, ")
    for line in lines:
        assert re.match(pattern, line), line
    assert {host for line in lines for host in re.findall(r"client\d", line.split(":")[0])} \
        == {"client1", "client2"}
    assert load_results(out / "results.json").status == "failed"
    nothing_left_running()
    after = server.info("stats")["total_commands_processed"]
    assert after - before < 20  # our INFO calls, no load


def test_a_second_run_is_refused_naming_the_first_and_force_runs_anyway_marked(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    first = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "run", "-i", str(lab.inventory_path),
         "--out", str(tmp_path / "first"), *QUICK, "--duration", "300s"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The first run loads the server: its agents hold their hosts (taken before any load).
        poll_until(lambda: len(server.client_list(_type="normal")) > LOAD_CONNECTIONS,
                   DEADLINE, "the first run's load connections")
        second = coord("run", "-i", str(lab.inventory_path), "--out", str(tmp_path / "second"),
                       *QUICK)
        holder = (f"held by the coord run of root@{socket.gethostname()} (pid {first.pid}) "
                  "since 20")
        assert second.returncode == 1, second.stdout
        lines = error_lines(second.stderr)
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"client1, client2, server: this host is {holder}")
        assert lines[0].endswith(" UTC; pass --force to run anyway")

        forced = coord("run", "-i", str(lab.inventory_path), "--out", str(tmp_path / "forced"),
                       *QUICK, "--force")
        assert forced.returncode == 0, forced.stderr
        document = load_results(tmp_path / "forced" / "results.json")
        assert document.status == "complete"
        assert "forced-over-run-lock" in document.marks
        assert [record.host for record in document.forced_over] == \
            ["client1", "client2", "server"]
        for record in document.forced_over:
            assert record.held_by.startswith(holder)
        assert first.poll() is None  # the first run went on meanwhile
        assert all(Path("/run/lock", lock_name(Path("/run/netns", host.namespace).stat()
                                                .st_ino)).is_file() for host in lab.hosts)
    finally:
        first.send_signal(signal.SIGINT)
        try:
            _, err = first.communicate(timeout=60)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    assert first.returncode == 130, err
    nothing_left_running()
    # Its agents gone, the first run's locks went with them: a plain run takes the hosts again.
    again = coord("run", "-i", str(lab.inventory_path), "--out", str(tmp_path / "again"), *QUICK)
    assert again.returncode == 0, again.stderr
    assert load_results(tmp_path / "again" / "results.json").forced_over == []
