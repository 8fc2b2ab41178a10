"""The same workload through the three drivers on the same lab: ops/s, ops/s per client core,
p50 and p99 side by side (issue 12).

One lab (server + 2 clients), one ``coord run`` per driver and round (``--rounds``, the
drivers' order rotated each round; medians), each 1 repetition of ``--duration`` with no
warm-up and no baseline. The workload, the same for each driver, per client host: 50
connections from one load thread (builtin: 1 process; redis-benchmark: ``--threads 1 -c 50``;
memtier: ``--threads 1 --clients 50``), pipeline ``--pipeline``, **SET only** (the one mix
all three can run identically: redis-benchmark runs its tests one after the other, so a
SET:GET 1:10 mix is not one it can give), random keys over 100 000, 32-byte values:

- builtin: ``set_ratio 1.0``, ``keyspace 100000``, ``value_size 32``, ``preload false``;
- redis-benchmark: ``tests [set]``, ``keyspace 100000`` (``-r``), ``value_size 32``,
  ``requests --rb-requests`` per host (given, so no calibration runs load the clients; ops/s
  is over the tool's own run);
- memtier: ``ratio 1:0``, keys 1..100000, ``data_size 32``, ``--test-time`` = duration.

Figures, from ``results.json``: ops/s (the repetition's, summed over clients), p50 and p99
(from the merged histogram), and **ops/s per client core** = requests ÷ the client CPU
seconds of the load: the lab's hosts share this machine's PID namespace, so this process
polls /proc every 20 ms for the kit's load processes in the lab's client namespaces (their
command line names the driver's load module) and the tools (``redis-benchmark``,
``memtier_benchmark``), and keeps each process's last user + system time (up to 20 ms of a
process's very end is missed). A load process's whole life is counted: its interpreter's
start, its connections, its wait for T0; for an external tool that Python process only starts
and reads the tool, so the table also gives the tool alone (what running it by hand costs).
Other labs on the machine run the same programs: only processes in this lab's client network
namespaces are counted.

    .venv/bin/python bench/bench_three_drivers.py [--rounds 2] [--duration 3]

Needs root (the lab), redis-benchmark and memtier_benchmark. Results on stdout, progress
(``#``) on stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lab import REPO, header, lab, median, note, parser, run_main, table

from coordinator.results import load_results

LAB_NAME = "rbm"
LAB_SUBNET = "198.18.206.0/24"
LOAD_MODULES = {
    "builtin": "agent.drivers.worker",
    "redis-benchmark": "agent.drivers.redis_benchmark_load",
    "memtier": "agent.drivers.memtier_load",
}
POLL_S = 0.02
TOOLS = {"redis-benchmark", "memtier_benchmark"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def workload(driver: str, duration_s: int, pipeline: int, rb_requests: int) -> list[str]:
    """``coord run`` settings: the same workload through ``driver``."""
    settings = {
        "builtin": {"processes": 1, "connections": 50, "pipeline": pipeline, "set_ratio": 1.0,
                    "keyspace": 100_000, "value_size": 32, "preload": "false"},
        "redis-benchmark": {"tests": "[set]", "clients": 50, "threads": 1,
                            "pipeline": pipeline, "keyspace": 100_000, "value_size": 32,
                            "requests": rb_requests},
        "memtier": {"threads": 1, "clients": 50, "pipeline": pipeline, "ratio": "'1:0'",
                    "key_minimum": 1, "key_maximum": 100_000, "data_size": 32},
    }[driver]
    section = driver.replace("-", "_")
    argv = ["--set", f"benchmark.driver={driver}", "--warmup", "0s",
            "--duration", f"{duration_s}s", "--repetitions", "1", "--no-baseline"]
    for key, value in settings.items():
        argv += ["--set", f"benchmark.{section}.{key}={value}"]
    return argv


class LoadCpu:
    """Client CPU seconds of a driver's load, polled from /proc: each load process's and each
    tool process's own user + system time, the last reading of each pid."""

    def __init__(self, module: str, netns: set[int]) -> None:
        self.module = module
        self.netns = netns  # the client hosts' network namespaces (inodes)
        self.kinds: dict[int, str] = {}  # pid -> "load" or "tool"
        self.strangers: dict[int, int] = {}  # pid -> readings that found it not ours
        self.last: dict[int, float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _kind(self, pid: int) -> str | None:
        try:
            if Path(f"/proc/{pid}/ns/net").stat().st_ino not in self.netns:
                return None  # another lab's (other runs share this machine's PID namespace)
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if argv and Path(argv[0].decode(errors="replace")).name in TOOLS:
            return "tool"
        return "load" if self.module.encode() in argv else None

    def _poll(self) -> None:
        """Each pid's kind is read from its command line until it is a tool (final): a load
        process's fork is the tool only once it has exec'd, and a pid is taken for a
        stranger only when two readings 20 ms apart say so (not a fork caught before exec)."""
        while not self.done.wait(POLL_S):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                pid = int(entry.name)
                if self.strangers.get(pid, 0) >= 2:
                    continue
                kind = self.kinds.get(pid)
                if kind != "tool":
                    kind = self._kind(pid)
                if kind is None:
                    self.strangers[pid] = self.strangers.get(pid, 0) + 1
                    continue
                self.kinds[pid] = kind
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                self.last[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def seconds(self, kind: str) -> float:
        return sum(cpu for pid, cpu in self.last.items() if self.kinds.get(pid) == kind)


@contextmanager
def counting(module: str, netns: set[int]) -> Iterator[LoadCpu]:
    cpu = LoadCpu(module, netns)
    cpu.thread.start()
    try:
        yield cpu
    finally:
        cpu.done.set()
        cpu.thread.join()


@dataclass(frozen=True)
class Sample:
    ops_per_sec: float
    per_core: float  # over the load's CPU: load processes and tools
    tool_per_core: float | None  # over the tool's own CPU only (external tools)
    p50_usec: int
    p99_usec: int
    clients_ops: list[float]


def client_netns(lab_name: str) -> set[int]:
    """The inodes of the lab's client hosts' network namespaces (``<lab>-clientK``)."""
    return {entry.stat().st_ino for entry in os.scandir("/var/run/netns")
            if entry.name.startswith(f"{lab_name}-client")}


def one_run(driver: str, inventory: Path, argv: list[str], netns: set[int]) -> Sample:
    with tempfile.TemporaryDirectory(prefix="bench-3d-") as directory:
        out = Path(directory) / "results"
        with counting(LOAD_MODULES[driver], netns) as cpu:
            done = subprocess.run(
                [sys.executable, "-m", "coordinator.cli", "run", "-i", str(inventory),
                 "--out", str(out), *argv],
                cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"coord run ({driver}) failed: {done.stderr.strip()[-400:]}")
        (repetition,) = load_results(out / "results.json").repetitions
    return Sample(
        ops_per_sec=repetition.ops_per_sec,
        per_core=_per(repetition.requests, cpu.seconds("load") + cpu.seconds("tool")),
        tool_per_core=(_per(repetition.requests, cpu.seconds("tool"))
                       if driver != "builtin" else None),
        p50_usec=repetition.latency_usec.p50,
        p99_usec=repetition.latency_usec.p99,
        clients_ops=[agent.ops_per_sec for agent in repetition.agents],
    )


def _per(requests: int, cpu_s: float) -> float:
    return requests / cpu_s if cpu_s > 0 else 0.0


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.set_defaults(lab_name=LAB_NAME, subnet=LAB_SUBNET)
    cli.add_argument("--rounds", type=int, default=2)
    cli.add_argument("--duration", type=int, default=3, help="measure phase, s")
    cli.add_argument("--pipeline", type=int, default=1)
    cli.add_argument("--rb-requests", type=int, default=150_000,
                     help="redis-benchmark -n per client host")
    args = cli.parse_args()
    header("the same workload through builtin, redis-benchmark and memtier (2 clients)")
    drivers = list(LOAD_MODULES)
    samples: dict[str, list[Sample]] = {driver: [] for driver in drivers}
    with lab(2, args.lab_name, args.subnet) as (status, _):
        netns = client_netns(args.lab_name)
        if len(netns) != 2:
            raise RuntimeError(f"expected 2 client namespaces of {args.lab_name}, got {netns}")
        for round_ in range(args.rounds):
            order = drivers[round_ % 3:] + drivers[:round_ % 3]  # rotated
            for driver in order:
                argv = workload(driver, args.duration, args.pipeline, args.rb_requests)
                sample = one_run(driver, status.inventory_path, argv, netns)
                samples[driver].append(sample)
                note(f"round {round_ + 1} {driver}: {sample.ops_per_sec:,.0f} ops/s "
                     f"(clients {', '.join(f'{c:,.0f}' for c in sample.clients_ops)}), "
                     f"{sample.per_core:,.0f} per client core (tool alone: "
                     f"{sample.tool_per_core or 0:,.0f}), p50 {sample.p50_usec} µs, "
                     f"p99 {sample.p99_usec} µs")
    rows = []
    for driver in drivers:
        got = samples[driver]
        rows.append([
            driver,
            f"{median([s.ops_per_sec for s in got]):,.0f}",
            f"{median([s.per_core for s in got]):,.0f}",
            (f"{median([s.tool_per_core or 0 for s in got]):,.0f}"
             if driver != "builtin" else "-"),
            f"{median([s.p50_usec for s in got]):,.0f}",
            f"{median([s.p99_usec for s in got]):,.0f}",
        ])
    table(["driver", "ops/s (2 clients)", "ops/s per client core", "tool alone", "p50 µs",
           "p99 µs"], rows,
          f"SET, 50 connections x 2 clients, -P {args.pipeline}, 32 B, 100 000 keys, "
          f"{args.duration} s, medians of {args.rounds}")


if __name__ == "__main__":
    sys.exit(run_main(main))
