"""The lab's Redis asks for a password, and `coord run` brings it from the lab's password file.

Needs root. One lab (``cwhl2`` on 198.18.141.0/24: one client and a server) for the module,
always torn down. Checks what the secret must never reach: an unauthenticated client, a
command line, coord's output, an agent log, the results directory.
"""

from __future__ import annotations

import os
import pwd
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from coordinator.inventory.loader import load_inventory
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.lab.plan import LabPaths, redis_user
from coordinator.results import load_results
from tests.helpers import module_lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
SPEC = LabSpec(name="cwhl2", clients=1, subnet="198.18.141.0/24")
PATHS = LabPaths.of(SPEC.name, SPEC.state_root)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(SPEC, tmp_path_factory.mktemp("auth-lab"))


def server_address(lab: LabStatus) -> str:
    return next(host.address for host in lab.hosts if host.role == "server")


def test_redis_refuses_a_client_without_the_password(lab: LabStatus) -> None:
    with socket.create_connection((server_address(lab), 6379), timeout=10) as anonymous:
        anonymous.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert anonymous.recv(128) == b"-NOAUTH Authentication required.\r\n"
    password = PATHS.redis_password.read_text().strip()
    with redis.Redis(host=server_address(lab), port=6379, password=password,
                     socket_timeout=10) as client:
        assert client.ping() is True


def test_redis_runs_unprivileged_and_its_password_is_in_mode_600_files_only(
    lab: LabStatus,
) -> None:
    password = PATHS.redis_password.read_text().strip()
    redis_pid = int(PATHS.redis_pidfile.read_text())
    process = psutil.Process(redis_pid)
    owner = pwd.getpwnam(redis_user(SPEC.name))
    assert process.uids().real == process.uids().effective == owner.pw_uid != 0
    assert process.gids().effective == owner.pw_gid
    assert not any(password in arg for arg in process.cmdline())
    password_file = PATHS.redis_password.stat()
    assert (stat.S_IMODE(password_file.st_mode), password_file.st_uid) == (0o600, 0)
    conf = PATHS.redis_conf.stat()
    assert (stat.S_IMODE(conf.st_mode), conf.st_uid) == (0o600, owner.pw_uid)
    assert password not in lab.inventory_path.read_text()
    server = load_inventory(lab.inventory_path).inventory.servers[0]
    assert (server.password, server.password_file) == (None, str(PATHS.redis_password))


def test_a_run_authenticates_from_the_file_and_the_secret_goes_nowhere_else(
    lab: LabStatus, tmp_path: Path
) -> None:
    password = PATHS.redis_password.read_text().strip()
    seen_in_argv: list[list[str]] = []
    done = threading.Event()

    def watch_command_lines() -> None:
        """Every process's argv, sampled all through the run (load processes included)."""
        while not done.wait(0.05):
            for proc in psutil.process_iter(["cmdline"]):
                cmdline = proc.info["cmdline"] or []
                if any(password in arg for arg in cmdline):
                    seen_in_argv.append(cmdline)

    watcher = threading.Thread(target=watch_command_lines, daemon=True)
    watcher.start()
    out = tmp_path / "results"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "coordinator.cli", "run", "-i", str(lab.inventory_path),
             "--out", str(out), "--repetitions", "1", "--warmup", "1s", "--duration", "2s",
             "--set", "benchmark.builtin.connections=2",
             "--set", "benchmark.builtin.processes=1", "--no-baseline"],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    finally:
        done.set()
        watcher.join(30)
    assert result.returncode == 0, result.stderr
    document = load_results(out / "results.json")
    assert document.status == "complete"
    assert document.repetitions[0].count > 0
    assert seen_in_argv == []
    assert password not in result.stdout + result.stderr
    results_files = [path for path in out.rglob("*") if path.is_file()]
    assert results_files
    assert [path for path in results_files if password in path.read_text()] == []
    agent_logs = [path for host in lab.hosts
                  for path in Path(f"/home/{host.user}").rglob("agent.log*")]
    assert agent_logs
    assert [path for path in agent_logs if password in path.read_text()] == []
