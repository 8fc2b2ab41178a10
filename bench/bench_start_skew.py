"""Start skew across agents for each way load processes wait for T0.

Target (issue 9): skew p99 ≤ 1 ms over 20 repetitions with one load process per core on the
2-client lab, without starving the neighbours; the true p99 reported in every other case.
Builds a lab (server + clients), deploys agents once, then for each start wait
(``agent.drivers.spec.START_WAITS``: ``spin``, ``sleep-spin``, ``sleep``; the bench alone sets
``Timeline.start_wait``) and each number of load processes per client runs ``--repetitions``
short repetitions exactly as `coord run` does (``coordinator.run.runner.run``), round-robin
over the configurations so a busy spell of the machine hits all alike. Per configuration: the
recorded skew (``start_skew_usec``: from each load process's first request
sent) p50 / p99 / max, its uncertainty (median), the widest first-request spread of an agent
(median), and how late after T0 the first request left (agent clock, p50 / max over
repetitions of the latest client); and how starved a neighbour was: a process on the same
machine sleeping 1 ms at a time (``_neighbour.py``), its latest wake-up from 2 ms before to
10 ms after each T0 (median / max over repetitions).

    .venv/bin/python bench/bench_start_skew.py [--clients 2] [--processes 1 2]
        [--waits spin sleep-spin sleep] [--repetitions 20]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import _lab

from agent.drivers.spec import START_WAITS
from coordinator.core.histograms import HISTOGRAM_PARAMS
from coordinator.core.reports import agent_report
from coordinator.inventory.loader import load_inventory
from coordinator.remote.fanout import NoProgress, ProgressView
from coordinator.remote.fleet import Fleet
from coordinator.results import Repetition
from coordinator.run.runner import check_targets, run


class QuietView:
    """A run view that shows nothing."""

    def deploying(self) -> ProgressView:
        return NoProgress()

    def repetition(self, index: int, total: int) -> None:
        """Nothing to show."""

    def progress(self, elapsed_s: float, total_s: float, clients: object,
                 hosts: object) -> None:
        """Nothing to show."""

    def repetition_done(self, repetition: Repetition) -> None:
        """Nothing to show."""

    def baseline_pair(self, when: str, pair: object) -> None:
        """Nothing to show (the bench measures no baseline)."""


@dataclasses.dataclass
class Samples:
    """One configuration's figures, a repetition at a time."""

    skews: list[float] = dataclasses.field(default_factory=list)
    uncertainty: list[float] = dataclasses.field(default_factory=list)
    spread: list[float] = dataclasses.field(default_factory=list)
    lateness: list[float] = dataclasses.field(default_factory=list)
    t0s: list[int] = dataclasses.field(default_factory=list)  # agent clock = the lab's clock
    neighbour: list[float] = dataclasses.field(default_factory=list)

    def judge_neighbour(self, wakeups: list[tuple[int, int]]) -> None:
        """The neighbour's latest wake-up around each T0 (from 2 ms before to 10 ms after)."""
        for t0 in self.t0s:
            around = [late for wall, late in wakeups if t0 - 2_000_000 <= wall <= t0 + 10_000_000]
            self.neighbour.append(max(around, default=0) / 1e9)

    def row(self, wait: str, processes: int) -> list[str]:
        return [wait, str(processes), str(len(self.skews)),
                *(_lab.us(_lab.percentile(self.skews, q)) for q in (50, 99, 100)),
                _lab.us(_lab.median(self.uncertainty)), _lab.us(_lab.median(self.spread)),
                _lab.us(_lab.median(self.lateness)), _lab.us(max(self.lateness)),
                _lab.us(_lab.median(self.neighbour)), _lab.us(max(self.neighbour))]


@contextlib.contextmanager
def neighbour(out: Path) -> Iterator[None]:
    """A 1 ms sleeper on this machine for the duration (``_neighbour.py``), its wake-ups in
    ``out`` after."""
    process = subprocess.Popen([sys.executable, str(Path(__file__).parent / "_neighbour.py"),
                                str(out)])
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=60)


def repetition(fleet: Fleet, inventory_path: Path, processes: int, wait: str,
               args: argparse.Namespace, samples: Samples) -> None:
    """One repetition of one configuration, its figures added to ``samples``."""
    inventory = load_inventory(inventory_path, [
        "benchmark.warmup=0s", f"benchmark.duration={args.duration}",
        "benchmark.repetitions=1", f"benchmark.builtin.processes={processes}",
        f"benchmark.builtin.connections={args.connections}", "baseline.enabled=false",
    ]).inventory
    plan = check_targets(inventory)
    plan = dataclasses.replace(plan, timeline=dataclasses.replace(plan.timeline, start_wait=wait))
    clients = [host.name for host in inventory.clients]

    def late_starts(step: str) -> None:
        if step == "merge":  # the agents have just delivered their reports
            reports = [agent_report(fleet.sessions[name].link.load_report(), name,
                                    HISTOGRAM_PARAMS) for name in clients]
            latest = max(r.started_ns + r.start_spread_ns - r.t0_ns for r in reports)
            samples.lateness.append(latest / 1e9)
            samples.t0s.append(min(r.t0_ns for r in reports))

    with tempfile.TemporaryDirectory(prefix="coord-bench-skew-") as out:
        outcome = run(fleet, plan, QuietView(), out=Path(out) / "results",
                      on_step=late_starts)
    (record,) = outcome.document.repetitions
    samples.skews.append(record.start_skew_usec / 1e6)
    samples.uncertainty.append((record.start_skew_uncertainty_usec or 0) / 1e6)
    samples.spread.append((record.first_request_spread_usec or 0) / 1e6)


def main() -> None:
    parser = _lab.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                        help="load processes per client, one configuration each")
    parser.add_argument("--waits", nargs="+", choices=START_WAITS, default=list(START_WAITS))
    parser.add_argument("--connections", type=int, default=8, help="connections per client")
    parser.add_argument("--duration", default="1s", help="measure phase per repetition")
    args = parser.parse_args()

    configurations = [(processes, wait) for processes in args.processes for wait in args.waits]
    samples = {configuration: Samples() for configuration in configurations}
    wakeups_file = Path(tempfile.mkdtemp(prefix="coord-bench-neighbour-")) / "wakeups"
    with (_lab.lab(args.clients, args.lab_name, args.subnet) as (status, inventory),
          _lab.running_fleet(inventory, _lab.deploy_options(args)) as fleet,
          neighbour(wakeups_file)):
        # Round-robin over the configurations, so a busy spell of the machine hits all alike.
        for index in range(args.repetitions):
            for processes, wait in configurations:
                repetition(fleet, status.inventory_path, processes, wait, args,
                           samples[processes, wait])
            _lab.note(f"round {index + 1}/{args.repetitions} done")
    wakeups = [(int(wall), int(late)) for wall, late in
               (line.split() for line in wakeups_file.read_text().splitlines())]
    shutil.rmtree(wakeups_file.parent, ignore_errors=True)
    for configuration in configurations:
        samples[configuration].judge_neighbour(wakeups)
    rows = [samples[processes, wait].row(wait, processes) for processes, wait in configurations]

    _lab.header(f"start skew, {args.clients} clients, {args.connections} connections each, "
                f"{args.repetitions} repetitions of {args.duration}")
    _lab.table(["start wait", "processes/client", "reps", "skew p50", "skew p99", "skew max",
                "± (median)", "first-request spread (median)", "late after T0 (median)",
                "late after T0 (max)", "neighbour late (median)", "neighbour late (max)"],
               rows)
    for row in rows:
        if row[1] == "1" and args.clients == 2:
            p99 = float(row[4].split()[0]) / 1e6
            _lab.verdict(f"skew p99 ({row[0]}, 1 process per client)", row[4], "≤ 1 ms",
                         p99 <= 0.001)


if __name__ == "__main__":
    sys.exit(_lab.run_main(main))
