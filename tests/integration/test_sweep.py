"""`coord sweep` on two real labs: a 2 x 2 sweep (two inventories x two connection counts),
one inventory's client under a CPU quota; interrupted with SIGINT after its first cell and
resumed, each inventory's agents started once, the index and the report written.

Needs root. Labs ``swa`` (198.18.224.0/24) and ``swb`` (198.18.225.0/24, its client under a
0.25-core quota), one client each, always torn down. One repetition of 1 s + 1 s per cell
(500 ms intervals; a small keyspace keeps the request pool quick to build at a quarter core).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from coordinator.inventory.schema import Host, Inventory
from coordinator.lab.api import LabSpec, LabStatus, lab_down, lab_up
from coordinator.remote.deploy import DeployOptions, PlacedAgent, SSHTransport
from coordinator.remote.fanout import StageReporter
from coordinator.results import load_results
from coordinator.run.runner import RunView
from coordinator.sweep.executor import run_sweep
from coordinator.sweep.index import CellRecord
from coordinator.sweep.load import load_sweep
from coordinator.sweep.store import cell_directory, read_index
from coordinator.sweep.table import QuietRunView
from tests.helpers import poll_until, when_lab_is_free

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
SPECS = (LabSpec(name="swa", clients=1, subnet="198.18.224.0/24"),
         LabSpec(name="swb", clients=1, subnet="198.18.225.0/24", client_cpu=0.25))


@pytest.fixture(scope="module")
def labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LabStatus]]:
    directory = tmp_path_factory.mktemp("sweep-labs")
    built: dict[str, LabStatus] = {}
    try:
        for spec in SPECS:
            built[spec.name] = when_lab_is_free(
                lambda spec=spec: lab_up(spec, directory / f"{spec.name}.yaml"))  # type: ignore[misc]
        yield built
    finally:
        for spec in SPECS:
            when_lab_is_free(lambda spec=spec: lab_down(spec.name, spec.state_root))  # type: ignore[misc]


def write_plan(path: Path, labs: dict[str, LabStatus]) -> Path:
    path.write_text(f"""\
version: 1
name: lab-sweep
inventories:
  - name: swa
    file: {labs['swa'].inventory_path}
    labels: {{instance_type: lab.free}}
    price_per_hour: 0.2
  - name: swb
    file: {labs['swb'].inventory_path}
    labels: {{instance_type: lab.quota}}
    price_per_hour: 0.05
set:
  benchmark.repetitions: 1
  benchmark.warmup: 1s
  benchmark.duration: 1s
  benchmark.interval: 500ms
  benchmark.builtin.processes: 1
  benchmark.builtin.keyspace: 10000
  baseline.enabled: false
matrix:
  benchmark.builtin.connections: [2, 8]
report:
  p99_bound: 100ms
""")
    return path


class CountingTransport:
    """SSH placement, counted per host address: how often each host's agent was started."""

    def __init__(self) -> None:
        self.inner = SSHTransport(DeployOptions())
        self.placed: Counter[str] = Counter()

    def place(self, host: Host, inventory: Inventory, report: StageReporter) -> PlacedAgent:
        self.placed[host.address] += 1
        return self.inner.place(host, inventory, report)


class RecordingView:
    """Records the cells the sweep runs."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.fleets: list[str] = []

    def fleet_starting(self, inventory: str) -> None:
        self.fleets.append(inventory)

    def cell_started(self, done: int, total: int, record: CellRecord,
                     seconds_left: float) -> None:
        self.started.append(record.key)

    def cell_ended(self, done: int, total: int, record: CellRecord) -> None:
        """Nothing to record: the index has it."""

    def run_view(self) -> RunView:
        return QuietRunView(Console(file=sys.stderr))


def completed(out: Path) -> set[str]:
    index = read_index(out)
    return set() if index is None else {c.key for c in index.cells if c.status == "complete"}


def test_sweep_interrupted_then_resumed_runs_each_cell_once(labs: dict[str, LabStatus],
                                                             tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "sweep.yaml", labs)
    out = tmp_path / "sweep"
    began = time.monotonic()
    first = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "sweep", "--plan",
                              str(plan), "--out", str(out)], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        poll_until(lambda: bool(completed(out)) or first.poll() is not None, 300,
                   "the sweep's first complete cell")
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 130, stderr
    assert "finished cell(s) kept in" in stderr
    done_before = completed(out)
    assert 1 <= len(done_before) < 4
    created = {key: load_results(out / key).created for key in done_before}

    loaded = load_sweep(plan)
    transport, view = CountingTransport(), RecordingView()
    outcome = run_sweep(loaded, out, view, transport=transport)
    took = time.monotonic() - began
    print(f"lab sweep: {took:.1f} s in all (4 cells, interrupted once)")

    every = {planned.cell.key for planned in loaded.cells}
    assert set(view.started) == every - done_before
    assert len(view.started) == len(set(view.started))
    for key, when in created.items():  # the finished cells were not run again
        assert load_results(out / key).created == when
    assert [cell.status for cell in outcome.index.cells] == ["complete"] * 4, \
        [(cell.key, cell.reason) for cell in outcome.index.cells]
    # each inventory with cells left started its agents once: one placement per host
    inventories = {planned.cell.inventory.name: planned.loaded.inventory
                   for planned in loaded.cells}
    expected = Counter(host.address for name in dict.fromkeys(view.fleets)
                       for host in inventories[name].hosts)
    assert transport.placed == expected
    assert outcome.fleet_starts == dict.fromkeys(view.fleets, 1)

    index = read_index(out)
    assert index is not None and index == outcome.index
    for cell in index.cells:
        document = load_results(cell_directory(out, cell))
        assert document.status == "complete"
        assert cell.headline is not None and document.summary is not None
        assert cell.headline.ops_per_sec == document.summary.ops_per_sec.median
        client_bound = {v.state for rep in document.repetitions for v in rep.verdicts
                        if v.name == "client-bound"}
        # the quota'd cells are marked as their results judge them: flagged keeps them out
        # of the ranking, undecided (no metrics wired into the verdict) is shown as such
        assert ("client-bound" in cell.flags) == ("flagged" in client_bound)
        assert ("client-bound" in cell.undecided) == (client_bound == {"undecided"})
        print(cell.key, f"{cell.headline.ops_per_sec:.0f} ops/s",
              f"p99 {cell.headline.p99_usec:.0f} us", cell.flags, cell.undecided)

    report = subprocess.run([sys.executable, "-m", "coordinator.cli", "sweep", "--plan",
                             str(plan), "--out", str(out), "--report"], cwd=ROOT, text=True,
                            capture_output=True, timeout=60, check=False)
    assert report.returncode == 0, report.stderr
    print(report.stdout)
    # all lab hosts read this machine's CPU: on a busy machine every cell can be client-bound,
    # and then no cell is ranked; the knee is shown exactly when some cell is clean
    assert ("◆ knee" in report.stdout) == any(cell.clean for cell in index.cells)
    assert "per inventory (p99 ≤ 100.000 ms)" in report.stdout
    for cell in index.cells:
        if "client-bound" in cell.flags:
            assert "client-bound (not ranked)" in report.stdout
