"""The netperf baseline on a real lab: netserver started and stopped by the agents, netperf per
pair, `coord baseline`, the baselines of `coord run`, and what goes wrong (Ctrl-C, a netserver
killed mid-baseline, a host without netperf).

Needs root. One lab (``bsl`` on 198.18.204.0/24: two clients and a server) for the module,
always torn down. Baselines of 1 s per iteration keep the module short.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from coordinator.core.baselines import BaselinePair
from coordinator.inventory.loader import load_inventory
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.remote.fleet import Fleet
from coordinator.results import load_results
from coordinator.run.runner import baseline_only
from tests.helpers import module_lab, poll_until

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
NAME = "bsl"
SUBNET = "198.18.204.0/24"
LAB_PREFIX = "198.18.204."
QUICK = ["--set", "baseline.duration=1s", "--set", "baseline.iterations=2"]
DEADLINE = 60.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(LabSpec(name=NAME, clients=2, subnet=SUBNET),
                          tmp_path_factory.mktemp("baseline"))


def netservers() -> list[psutil.Process]:
    """netserver processes bound to one of this lab's addresses."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "netserver" and any(LAB_PREFIX in arg for arg in cmdline):
            with_status = psutil.Process(proc.pid)
            try:
                if with_status.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except psutil.NoSuchProcess:
                continue
    return found


def listening_netservers(address: str) -> list[psutil.Process]:
    """The netserver an agent started on ``address``, not the children it forks per test."""
    return [proc for proc in netservers() if address in proc.info["cmdline"]
            and _parent_name(proc) != "netserver"]


def first_pair_runs(address: str) -> bool:
    """A netperf runs towards ``address``: the baseline's netservers have all started."""
    return any(proc.info["name"] == "netperf" and address in (proc.info["cmdline"] or [])
               for proc in psutil.process_iter(["name", "cmdline"]))


def _parent_name(proc: psutil.Process) -> str | None:
    try:
        parent = proc.parent()
        return None if parent is None else parent.name()
    except psutil.NoSuchProcess:
        return None


def no_netserver_left() -> None:
    poll_until(lambda: not netservers(), DEADLINE, "every netserver of the lab to exit")


def coord(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)


def measured(lab: LabStatus, *overrides: str) -> list[BaselinePair]:
    inventory = load_inventory(lab.inventory_path, ["baseline.duration=1s",
                                                    "baseline.iterations=2",
                                                    *overrides]).inventory
    with Fleet(inventory) as fleet:
        return baseline_only(fleet, inventory, lambda pair: None)


def assert_measured(pair: BaselinePair, iterations: int = 2) -> None:
    assert pair.error is None, pair.error
    assert pair.median is not None and len(pair.iterations) == iterations
    for figures in (*pair.iterations, pair.median):
        assert figures.transactions_per_sec > 0
        assert 0 < figures.min_usec <= figures.p50_usec <= figures.p90_usec
        assert figures.p90_usec <= figures.p99_usec <= figures.max_usec


def test_coord_baseline_gives_one_row_per_client_server_pair(lab: LabStatus) -> None:
    result = coord("baseline", "-i", str(lab.inventory_path), *QUICK)
    assert result.returncode == 0, result.stderr
    assert "client1 → server" in result.stdout and "client2 → server" in result.stdout
    rows = measured(lab)
    assert [(row.client, row.server) for row in rows] == [("client1", "server"),
                                                          ("client2", "server")]
    for row in rows:
        assert_measured(row)
        assert row.address == "198.18.204.10"
        assert (row.request_size, row.response_size) == (1, 1)
    no_netserver_left()


def test_pairs_all_measures_the_full_matrix(lab: LabStatus) -> None:
    rows = measured(lab, "baseline.pairs=all", "baseline.iterations=1",
                    "baseline.value_size_from_benchmark=true")
    hosts = ["server", "client1", "client2"]
    assert [(row.client, row.server) for row in rows] == [
        (source, target) for source in hosts for target in hosts if source != target]
    for row in rows:
        assert row.error is None, row.error
        assert row.median is not None and row.median.transactions_per_sec > 0
        assert (row.request_size, row.response_size) == (32, 32)  # the builtin's value size
    no_netserver_left()


def test_ctrl_c_in_the_middle_leaves_no_netserver(lab: LabStatus) -> None:
    """Ctrl-C while a netperf runs ends the baseline without waiting for the netperf (a 300 s
    iteration), and the agents take their netperf and netservers along."""
    assert not netservers()
    child = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "baseline", "-i", str(lab.inventory_path),
         "--set", "baseline.duration=300s", "--set", "baseline.iterations=1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        poll_until(lambda: first_pair_runs("198.18.204.10"), DEADLINE, "the first netperf")
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=DEADLINE)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, stderr
    assert "interrupted" in stderr
    no_netserver_left()
    poll_until(lambda: not first_pair_runs("198.18.204.10"), DEADLINE, "the netperf to end")


def test_a_netserver_killed_mid_baseline_fails_its_pairs_only(lab: LabStatus) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "baseline", "-i", str(lab.inventory_path),
         "--set", "baseline.pairs=all", "--set", "baseline.duration=1s",
         "--set", "baseline.iterations=3"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Killed while the first pair (server → client1) runs, every netserver having started
        # before it: the pairs towards client2 start three 1 s iterations later. Killing it
        # after the first pair's row was a race a slow CI machine lost: the pair server →
        # client2 passed all three iterations, so the kill came after the last had started.
        poll_until(lambda: first_pair_runs("198.18.204.11"), DEADLINE, "the first pair's netperf")
        victims = listening_netservers("198.18.204.12")
        assert len(victims) == 1
        victims[0].kill()
        _, rest = child.communicate(timeout=DEADLINE * 2)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 1, rest
    rows = [line.strip() for line in rest.splitlines() if "baseline: " in line]
    assert len(rows) == 6, rest
    failed = {line.split(": ")[1] for line in rows if "no netserver answered" in line}
    assert failed == {"server → client2", "client1 → client2"}, rows
    assert ("baseline: client1 → client2: no netserver answered on 198.18.204.12 port 12865 "
            "(connection refused: netserver not running or stopped) (exit status 255)") in rows
    for line in rows:
        if "→ client2" not in line:
            assert "transactions/s" in line and "(" not in line, line
    no_netserver_left()


def test_a_host_without_netperf_fails_in_one_line_before_any_load(lab: LabStatus,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = coord("run", "-i", str(lab.inventory_path), "--out", str(out), "--repetitions",
                   "1", "--set", "hosts[2].tool_path=/var/empty", *QUICK)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "client2: netperf not found on the agent's PATH (/var/empty); install it: apt-get "
        "install netperf (Debian: the netperf package is in the non-free component), or set "
        "hosts[].tool_path to where it is")
    document = load_results(out / "results.json")
    assert document.status == "failed" and not document.repetitions
    assert document.baselines is None
    assert not netservers()


def test_a_run_measures_the_baseline_before_and_after_and_says_when_it_skips(
        lab: LabStatus, tmp_path: Path) -> None:
    quick_run = ["--repetitions", "1", "--warmup", "1s", "--duration", "2s",
                 "--set", "benchmark.builtin.connections=4",
                 "--set", "benchmark.builtin.processes=1", *QUICK,
                 "--set", "baseline.iterations=1"]  # measured before and after: 4 pairs
    result = coord("run", "-i", str(lab.inventory_path), "--out", str(tmp_path / "with"),
                   *quick_run)
    assert result.returncode == 0, result.stderr
    document = load_results(tmp_path / "with" / "results.json")
    assert document.baselines is not None and not document.baselines.skipped
    for rows in (document.baselines.before, document.baselines.after):
        assert [(row.client, row.server) for row in rows] == [("client1", "server"),
                                                              ("client2", "server")]
        for row in rows:
            assert_measured(row, iterations=1)
    for client in ("client1", "client2"):
        assert f"{client} → redis: p50 " in result.stdout
    assert "of which the bare network round trip is" in result.stdout

    result = coord("run", "-i", str(lab.inventory_path), "--out", str(tmp_path / "without"),
                   "--no-baseline", *quick_run)
    assert result.returncode == 0, result.stderr
    raw = json.loads((tmp_path / "without" / "results.json").read_text())
    assert raw["baselines"] == {"skipped": True, "before": [], "after": [], "drift": []}
    assert "no-baseline" in raw["marks"]
    no_netserver_left()
