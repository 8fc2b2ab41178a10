"""Start skew across agents, and the agent's own CPU while load runs (drivers excluded).

Targets (design §7): start skew ≤ 1 ms at p99 over 20 repetitions; the agent's own CPU while
its drivers load the server ≤ 1 % of a core. Builds a lab (server + clients), deploys agents
once, then runs short repetitions exactly as `coord run` does (``coordinator.run.runner``), reading
each agent process's own CPU time (``status().cpu_s``: the agent process, not its load
processes) before and after each repetition. Anchor for the CPU figure: the same agents' CPU
over an idle stretch of the same length, same run.

    .venv/bin/python bench/bench_run.py [--repetitions 20] [--clients 2] [--processes 1]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import _lab

from coordinator.inventory.loader import load_inventory
from coordinator.remote.fanout import NoProgress, ProgressView
from coordinator.remote.fleet import AgentSession, Fleet
from coordinator.results import Repetition
from coordinator.run.loadspec import phases
from coordinator.run.runner import RunPlan, check_targets, run


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


def measured_run(fleet: Fleet, plan: RunPlan,
                 clients: list[AgentSession]) -> tuple[Repetition, dict[str, float]]:
    """One repetition as `coord run` runs it, and each client agent's own CPU from the start
    at T0 to the collect (the load only), as a share of one core."""
    readings: list[dict[str, float]] = []
    marks: list[float] = []

    def around_the_load(step: str) -> None:
        if step in ("start at T0", "collect"):
            readings.append({c.host.name: c.link.status().cpu_s for c in clients})
            marks.append(time.monotonic())

    with tempfile.TemporaryDirectory(prefix="coord-bench-run-") as out:
        outcome = run(fleet, plan, QuietView(), out=Path(out) / "results",
                      on_step=around_the_load)
    wall = marks[1] - marks[0]
    (repetition,) = outcome.document.repetitions
    before, after = readings
    return repetition, {host: (after[host] - before[host]) / wall for host in before}


def main() -> None:
    parser = _lab.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--processes", type=int, default=1, help="load processes per client")
    parser.add_argument("--connections", type=int, default=8, help="connections per client")
    parser.add_argument("--duration", default="2s", help="measure phase per repetition")
    args = parser.parse_args()

    with _lab.lab(args.clients, args.lab_name, args.subnet) as (status, _):
        loaded = load_inventory(status.inventory_path, [
            "benchmark.warmup=0s", f"benchmark.duration={args.duration}",
            "benchmark.repetitions=1", "baseline.enabled=false",
            f"benchmark.builtin.processes={args.processes}",
            f"benchmark.builtin.connections={args.connections}",
        ])
        inventory = loaded.inventory
        seconds = phases(inventory).total_s
        plan = check_targets(inventory)
        with _lab.running_fleet(inventory, _lab.deploy_options(args)) as fleet:
            clients = [fleet.sessions[host.name] for host in inventory.clients]
            idle_before = {c.host.name: c.link.status().cpu_s for c in clients}
            idle_started = time.monotonic()
            time.sleep(seconds)  # the anchor: agents idle (heartbeats only) for as long
            idle_wall = time.monotonic() - idle_started
            idle = {c.host.name: c.link.status().cpu_s - idle_before[c.host.name]
                    for c in clients}
            skews: list[float] = []
            busy: dict[str, list[float]] = {c.host.name: [] for c in clients}
            rates: list[float] = []
            for index in range(args.repetitions):
                repetition, agent_cpu = measured_run(fleet, plan, clients)
                for host, share in agent_cpu.items():
                    busy[host].append(share)
                skews.append(repetition.start_skew_usec / 1e6)
                rates.append(repetition.ops_per_sec)
                _lab.note(f"repetition {index + 1}: skew {repetition.start_skew_usec:.0f} µs, "
                          f"{repetition.ops_per_sec:,.0f} ops/s")

    _lab.header(f"start skew over {len(skews)} repetitions ({args.clients} clients, "
                f"{args.processes} load process(es) each)")
    _lab.table(["p50", "p90", "p99", "max"],
               [[_lab.us(_lab.percentile(skews, q)) for q in (50, 90, 99, 100)]])
    p99 = _lab.percentile(skews, 99)
    _lab.verdict("start skew p99", _lab.us(p99), "≤ 1 ms", p99 <= 0.001)

    _lab.header("agent's own CPU (load processes excluded), % of one core")
    rows = []
    worst = 0.0
    for host, shares in sorted(busy.items()):
        load_share = _lab.median(shares)
        worst = max(worst, load_share)
        rows.append([host, f"{load_share:.2%}", f"{max(shares):.2%}",
                     f"{idle[host] / idle_wall:.2%}"])
    _lab.table(["agent", "during load (median)", "during load (max)", "idle anchor"], rows)
    _lab.note(f"throughput per repetition: median {_lab.median(rates):,.0f} ops/s")
    _lab.verdict("agent CPU during load", f"{worst:.2%}", "≤ 1 % of a core", worst <= 0.01)


if __name__ == "__main__":
    sys.exit(_lab.run_main(main))
