"""Faults during `coord run` on a real lab: a silent partition, signals during a preload, debris.

Needs root. One lab (``cflt`` on 198.18.156.0/24: two clients and a server with real Redis)
for the module, always torn down. Each test runs the real ``.venv/bin/coord`` as a subprocess
and watches the lab's processes from the root namespace (the lab shares its pid namespace).

Figures (how long a step took) are printed, never asserted: the deadlines below are generous
bounds that only a broken clean-up exceeds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from coordinator.lab.api import LabSpec, LabStatus
from coordinator.lab.plan import user_name, veth_name
from coordinator.results import load_results
from tests.helpers import emptied_lab_redis, module_lab, poll_until, process_gone, wait_for_line

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
COORD = str(ROOT / ".venv" / "bin" / "coord")
NAME = "cflt"
SUBNET = "198.18.156.0/24"
QUICK = ["--set", "benchmark.builtin.connections=4", "--set", "benchmark.builtin.processes=1",
         "--no-baseline"]  # test_baseline.py measures baselines
LOST_HOST_DEADLINE_S = 20.0
"""From the cut to coord naming the lost host: the heartbeat timeout (10 s) plus margin."""
AGENT_GONE_DEADLINE_S = 30.0
"""From the cut to the cut agent and its load processes gone: watchdog (15 s) + 2 s + margin."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(LabSpec(name=NAME, clients=2, subnet=SUBNET),
                          tmp_path_factory.mktemp("faults"))


@pytest.fixture
def server(lab: LabStatus) -> Iterator[redis.Redis]:
    yield from emptied_lab_redis(lab)


def start_coord(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([COORD, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def host_pythons(host: str) -> list[psutil.Process]:
    """The Python processes of a lab host's user: its agent and the agent's load processes."""
    user = user_name(NAME, host)
    found = []
    for proc in psutil.process_iter(["username", "name", "status"]):
        if (proc.info["username"] == user and (proc.info["name"] or "").startswith("python")
                and proc.info["status"] != psutil.STATUS_ZOMBIE):
            found.append(proc)
    return found


def load_running(host: str) -> list[int] | None:
    """The pids of ``host``'s agent and its load processes, once both are there."""
    procs = host_pythons(host)
    agents = [p for p in procs if "serve" in command_line(p)]
    if len(agents) == 1 and len(procs) >= 2:
        return [p.pid for p in procs]
    return None


def command_line(process: psutil.Process) -> list[str]:
    """Its argv, or nothing if it has already gone (a short-lived probe of the host)."""
    try:
        return process.cmdline()
    except psutil.NoSuchProcess:
        return []


def commands(server: redis.Redis) -> int:
    return int(server.info("stats")["total_commands_processed"])


def finish(process: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_a_silent_partition_names_the_lost_host_and_leaves_no_process(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    out = tmp_path / "cut"
    veth = veth_name(NAME, "client2")
    process = start_coord("run", "-i", str(lab.inventory_path), "--out", str(out), *QUICK,
                          "--repetitions", "1", "--warmup", "1s", "--duration", "120s")
    try:
        pids: list[int] = []
        before = commands(server)

        def running() -> bool:
            pids[:] = load_running("client2") or []
            return bool(pids) and commands(server) > before + 10_000

        poll_until(running, 120, "the load from client2's agent and load processes")
        # Packets vanish: no RST, no ICMP, the sockets on both sides stay open.
        subprocess.run(["ip", "link", "set", veth, "down"], check=True)
        cut = time.monotonic()
        assert process.stderr is not None
        lines = wait_for_line(process.stderr, "client2", LOST_HOST_DEADLINE_S)
        named = time.monotonic() - cut
        _, err = finish(process, AGENT_GONE_DEADLINE_S)
        exited = time.monotonic() - cut
        poll_until(lambda: all(process_gone(pid) for pid in pids),
                   AGENT_GONE_DEADLINE_S - exited,
                   f"client2's agent and load processes {pids} to end")
        gone = time.monotonic() - cut
    finally:
        subprocess.run(["ip", "link", "set", veth, "up"], check=False)
        if process.poll() is None:
            process.kill()
            process.communicate()
    print(f"\nsilent partition: host named after {named:.1f} s, coord exited after "
          f"{exited:.1f} s, agent and load processes gone after {gone:.1f} s")
    err = "".join(lines) + err
    assert process.returncode == 1, err
    assert "Traceback" not in err
    assert "client2" in lines[-1] and "client1" not in lines[-1]
    document = load_results(out / "results.json")
    assert document.status == "failed"
    assert document.failure is not None
    assert document.failure.hosts == ["client2"]
    assert "client2" in document.failure.reason
    poll_until(lambda: not host_pythons("client1") and not host_pythons("client2"), 30,
               "every agent to end")


PRELOAD_KEYS = 30_000_000
"""Far more keys than the lab preloads in a minute: the preload is still going when signalled."""
STOP_DEADLINE_S = 5.0
"""From SIGTERM to coord, every agent and every load process gone (the target is 1 s)."""


def test_sigterms_during_a_preload_stop_everything_at_once_without_a_traceback(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    out = tmp_path / "preload"
    process = start_coord("run", "-i", str(lab.inventory_path), "--out", str(out), *QUICK,
                          "--repetitions", "1", "--warmup", "1s", "--duration", "2s",
                          "--set", "benchmark.builtin.preload=true",
                          "--set", f"benchmark.builtin.keyspace={PRELOAD_KEYS}")
    try:
        poll_until(lambda: server.dbsize() > 10_000, 120, "client1 to preload the keyspace")
        pids = [proc.pid for host in ("client1", "client2") for proc in host_pythons(host)]
        assert len(pids) >= 3, "client1's agent and preload process, client2's agent"
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # More signals all through the clean-up: none may break into it or print a traceback.
        while time.monotonic() < signalled + STOP_DEADLINE_S:
            try:
                process.wait(timeout=0.02)
                break
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGTERM)
        exited = time.monotonic() - signalled
        _, err = finish(process, STOP_DEADLINE_S)
        poll_until(lambda: all(process_gone(pid) for pid in pids), STOP_DEADLINE_S,
                   f"the agents and the preload process {pids} to end")
        gone = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    keys = server.dbsize()
    print(f"\nSIGTERM during a preload: coord exited after {exited:.2f} s, agents and load "
          f"processes gone after {gone:.2f} s, {keys} of {PRELOAD_KEYS} keys preloaded")
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1].startswith("interrupted; 0 finished repetition(s) kept")
    assert server.dbsize() == keys < PRELOAD_KEYS
    document = load_results(out / "results.json")
    assert document.status == "interrupted"
    assert document.repetitions == [] and "interrupted" in document.marks


# --- debris: what a refused or failed command leaves -----------------------------------------


def test_a_refused_lab_up_leaves_no_state_directory(tmp_path: Path) -> None:
    state = Path("/var/lib/coord-lab-cflt2-test")
    shutil.rmtree(state, ignore_errors=True)
    inventory = tmp_path / "mine.yaml"
    inventory.write_text("# the operator's own file\n")
    try:
        result = subprocess.run(
            [COORD, "lab", "up", "--name", "cflt2", "--subnet", "198.18.157.0/24",
             "--clients", "1", "--inventory", str(inventory), "--state-dir", str(state)],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 1, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "was not written by `coord lab up`" in result.stderr
        assert not state.exists()
        assert inventory.read_text() == "# the operator's own file\n"
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_a_run_that_fails_deploying_leaves_a_document_saying_why(
    lab: LabStatus, tmp_path: Path
) -> None:
    out = tmp_path / "undeployed"
    result = subprocess.run(
        [COORD, "run", "-i", str(lab.inventory_path), "--out", str(out), *QUICK,
         "--repetitions", "1", "--set", "hosts[2].port=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    document = load_results(out / "results.json")
    assert document.status == "failed"
    assert document.failure is not None
    assert document.failure.hosts == ["client2"]
    assert document.failure.reason.startswith("client2: ")
    assert [path.name for path in out.iterdir()] == ["results.json"]


def test_a_run_that_fails_before_any_load_says_why(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    out = tmp_path / "auth"
    wrong = tmp_path / "wrong.password"
    wrong.write_text("wrong\n")
    wrong.chmod(0o600)
    result = subprocess.run(
        [COORD, "run", "-i", str(lab.inventory_path), "--out", str(out), *QUICK,
         "--repetitions", "1", "--set", f"servers[0].password_file={wrong}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    document = load_results(out / "results.json")
    assert document.status == "failed"
    assert document.failure is not None
    assert document.failure.hosts == ["client1", "client2"]
    assert "cannot authenticate to" in document.failure.reason
    assert document.failure.reason == result.stderr.strip().splitlines()[-1]
