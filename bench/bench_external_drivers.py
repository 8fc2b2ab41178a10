"""Throughput of redis-benchmark run through coord's driver ÷ the same command run by hand.
Target (issue 12): >= 0.99.

Both load the same local ``redis-server`` (started here on a free loopback port, no
persistence, stopped on the way out) with the same command line
(``agent.drivers.redis_benchmark_command.command_line``: ``-t set,get -c 50 --threads 1 -P N
-n REQUESTS -r 100000 -d 32 --precision 3``), alternated, ``--rounds`` rounds, medians:

- by hand: ``subprocess.run`` of the command; throughput = the tool's requests over its
  tests' durations, from each test's "throughput summary" (its printed seconds have only two
  decimals: 2 % of a half-second test);
- through coord: the redis-benchmark driver (``agent.drivers.redis_benchmark``, called
  directly as the agent does: its load process spawns the tool at T0, reads its report and
  rebuilds the histograms); throughput = the report's count over its run, from the first
  request (spawn + measured launch delay) to the load's end (a little beyond the tool's own
  seconds: its exit is counted against coord).

    .venv/bin/python bench/bench_external_drivers.py [--rounds 3] [--requests 1000000]

Needs redis-server and redis-benchmark on PATH; no lab, no root.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lab import header, median, note, table, verdict
from _loopback import redis_server, run_interruptible

from agent.drivers.redis_benchmark import RedisBenchmarkDriver
from agent.drivers.redis_benchmark_command import command_line
from agent.drivers.redis_benchmark_output import read_report
from agent.drivers.redis_benchmark_plan import parse_driver_params
from agent.drivers.spec import Target, parse_spec

TARGET_RATIO = 0.99
START_MARGIN_NS = 200_000_000


def params(requests: int, pipeline: int) -> dict[str, object]:
    return {
        "tests": ["set", "get"], "command": None, "clients": 50, "threads": 1,
        "pipeline": pipeline, "value_size": 32, "keyspace": 100_000, "requests": requests,
        "precision": 3, "warmup_s": 0,
    }  # fmt: skip


def by_hand(port: int, requests: int, pipeline: int) -> float:
    tool = parse_driver_params(params(requests, pipeline)).tool
    argv = command_line(tool, Target(address="127.0.0.1", port=port))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True)
    tests = read_report(done.stdout)
    # the summary's rps (ms resolution), not "completed in X.XX seconds" (10 ms resolution)
    return sum(t.requests for t in tests) / sum(t.requests / t.throughput_rps for t in tests)


def through_coord(port: int, requests: int, pipeline: int) -> float:
    spec = parse_spec(json.dumps({
        "format": 2, "driver": "redis-benchmark",
        "target": {"address": "127.0.0.1", "port": port, "password": None, "username": None,
                   "tls": None, "source_address": None},
        "timeline": {"interval_ns": 60_000_000_000, "warmup_intervals": 0,
                     "measure_intervals": 1},
        "histogram": {"lowest_usec": 1, "highest_usec": 60_000_000, "significant_figures": 3},
        "params": params(requests, pipeline),
    }))  # fmt: skip
    driver = RedisBenchmarkDriver()
    try:
        driver.prepare(spec)
        driver.start_at(time.time_ns() + START_MARGIN_NS)
        deadline = time.monotonic() + 600
        while not driver.state.done:
            if time.monotonic() > deadline:
                raise RuntimeError("the driver's load did not end")
            time.sleep(0.05)
        report = driver.report()
    finally:
        driver.close()
    count = sum(interval.count for interval in report.intervals)
    return count / ((report.stopped_ns - report.started_ns) / 1e9)


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--rounds", type=int, default=3)
    cli.add_argument("--requests", type=int, default=1_000_000, help="-n per test")
    cli.add_argument("--pipelines", type=int, nargs="+", default=[1, 16])
    args = cli.parse_args()
    header("redis-benchmark through coord ÷ by hand")
    rows = []
    met = True
    with redis_server() as port:
        for pipeline in args.pipelines:
            hand, coord = [], []
            for round_ in range(args.rounds):
                first_by_hand = round_ % 2 == 0  # alternated
                for which in ((0, 1) if first_by_hand else (1, 0)):
                    if which == 0:
                        hand.append(by_hand(port, args.requests, pipeline))
                    else:
                        coord.append(through_coord(port, args.requests, pipeline))
                note(f"-P {pipeline} round {round_ + 1}: by hand {hand[-1]:.0f}/s, "
                     f"through coord {coord[-1]:.0f}/s")
            ratio_ = median(coord) / median(hand)
            met = met and ratio_ >= TARGET_RATIO
            rows.append((pipeline, f"{median(hand):.0f}", f"{median(coord):.0f}",
                         f"{ratio_:.3f}"))
    table(["-P", "by hand ops/s (median)", "through coord ops/s (median)", "ratio"], rows)
    verdict("through coord ÷ by hand", ", ".join(str(row[3]) for row in rows),
            f">= {TARGET_RATIO}", met)
    return 0


if __name__ == "__main__":
    sys.exit(run_interruptible(main))
