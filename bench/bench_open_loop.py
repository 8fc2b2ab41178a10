"""The open loop's own overhead: rate accuracy and schedule lateness at 10 %, 50 % and 90 % of
the closed loop's capacity, measured in the same run (issue 13, item 6). Targets at 50 %: the
achieved rate within 1 % of the target, the lateness p99 under 100 µs on a host with headroom.

One local ``redis-server`` (free loopback port, no persistence, stopped on the way out); the
builtin driver called directly (no agent), one load process, ``--connections`` connections,
pipeline 1, GET/SET 9:1 over a preloaded keyspace, 1 s intervals, 1 s warm-up, ``--seconds``
measured:

1. the closed loop: its capacity = requests of the measure intervals ÷ their length;
2. the open loop at 10 %, 50 %, 90 % of that capacity (``rate``, constant arrivals): the
   achieved rate = requests **sent** in the measure intervals ÷ their length, its error against
   the target; the lateness (send minus intended time, every batch) p50 / p99 / max from the
   intervals' merged lateness histograms, and the p99 of the loop's own lateness (the batches
   whose connection was free at their point: without those that queued behind an unanswered
   request, which waited for the server); requests sent late (> 1 ms) and not sent at the end;
   the latency p50 / p99 (from the intended times); and how many of the measured intervals
   kept the lateness target on their own (late sends spread over the run are the loop's cost,
   late sends gathered in a few intervals a stall's).

    .venv/bin/python bench/bench_open_loop.py [--seconds 5] [--rounds 1] [--pin] [--interval 1]
                                              [--rate REQUESTS_PER_S]

``--pin`` gives the load process a core of its own: it runs on the first CPU, redis-server and
this script on the others (needs 2 CPUs at least), this script's threads at ``SCHED_IDLE``
while the load runs (the agent they stand in for runs on the client's host, not the server's).
Unpinned, the load process shares its core with redis-server at every share, and the
scheduler's preemptions show in the lateness; pinned is the nearest this machine comes to "a
host with headroom" (other tenants of a shared VM and the kernel's network processing still
take their share of that core).

Needs redis-server on PATH; no lab, no root. Results on stdout, progress (``#``) on stderr.
The machine is shared: the figures are what it gave, not what a quiet host would.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _floor import Floor, schedule_floor
from _lab import header, median, note, table, verdict
from _loopback import (
    CLIENT_CPU,
    idle_threads,
    move_off_client_cpu,
    redis_server,
    run_interruptible,
)

from agent.drivers.builtin import BuiltinDriver
from agent.drivers.intervals import IntervalData, LoadReport
from agent.drivers.spec import parse_spec
from agent.histograms import HistogramParams, counts_view, decode, merge_encoded, percentiles

SHARES = (0.10, 0.50, 0.90)
TARGET_ERROR = 0.01
TARGET_LATENESS_P99_USEC = 100


@dataclass(frozen=True)
class Sample:
    share: float
    target: float
    achieved: float
    lateness_p50: int
    lateness_p99: int
    own_lateness_p99: int  # the sends on a free connection: the loop's own lateness
    lateness_max: int
    late: int
    not_sent: int
    latency_p50: int
    latency_p99: int
    calm_intervals: int  # intervals whose own lateness p99 met the target
    intervals: int

    @property
    def error(self) -> float:
        return self.achieved / self.target - 1


def main() -> int:
    args = parse_args()
    header("open loop: rate accuracy and schedule lateness")
    others = move_off_client_cpu() if args.pin else None
    with redis_server(others) as port:
        closed = []
        shares = () if args.rate else SHARES
        samples: dict[float, list[Sample]] = {share: [] for share in shares}
        floors: list[Floor] = []
        floors_busy: list[Floor] = []
        for round_index in range(args.rounds):
            note(f"round {round_index + 1}/{args.rounds}: closed loop")
            report = run(port, None, args, preload=round_index == 0)
            capacity = requests_per_sec(report, sent=False)
            closed.append(capacity)
            note(f"closed-loop capacity {capacity:,.0f} requests/s")
            floor_rate = args.rate or capacity * 0.50
            note(f"the machine's floor: a do-nothing loop keeping {floor_rate:,.0f} points/s")
            cpu = CLIENT_CPU if args.pin else None
            floors.append(schedule_floor(floor_rate, args.seconds, cpu))
            floors_busy.append(schedule_floor(floor_rate, args.seconds, cpu, busy_others=True))
            for share in shares:
                rate = capacity * share
                note(f"open loop at {share:.0%}: {rate:,.0f} requests/s")
                samples[share].append(sample(share, rate, run(port, rate, args, preload=False)))
            if args.rate:
                note(f"open loop at {args.rate:,.0f} requests/s")
                samples.setdefault(0.0, []).append(sample(
                    args.rate / capacity, args.rate, run(port, args.rate, args, preload=False)))
    show(closed, samples, floors, floors_busy, args)
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=5, help="measured seconds per run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--keyspace", type=int, default=100_000)
    parser.add_argument("--interval", type=float, default=1.0,
                        help="interval length, s (shorter: more boundaries, each a pause)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="the open loop at this rate (requests/s) only, not at shares: "
                             "trees compared at one rate whatever each round's capacity")
    parser.add_argument("--pin", action="store_true",
                        help="the load process on the first CPU, everything else elsewhere")
    return parser.parse_args()


def run(port: int, rate: float | None, args: argparse.Namespace, *, preload: bool) -> LoadReport:
    spec = {
        "format": 2,
        "driver": "builtin",
        "target": {"address": "127.0.0.1", "port": port, "password": None, "username": None,
                   "tls": None},
        "timeline": {"interval_ns": round(args.interval * 1e9),
                     "warmup_intervals": math.ceil(1 / args.interval),
                     "measure_intervals": round(args.seconds / args.interval)},
        "histogram": {"lowest_usec": 1, "highest_usec": 60_000_000, "significant_figures": 3},
        "params": {"processes": 1, "connections": args.connections, "pipeline": 1,
                   "set_ratio": 0.1, "keyspace": args.keyspace, "value_size": 32,
                   "rate": rate, "arrivals": "constant", "preload": preload},
    }  # fmt: skip
    driver = BuiltinDriver()
    try:
        driver.prepare(parse_spec(json.dumps(spec)))
        if args.pin:
            for pid in driver.worker_pids():
                os.sched_setaffinity(pid, {CLIENT_CPU})
            idle_threads()
        t0_ns = time.time_ns() + 200_000_000
        driver.start_at(t0_ns)
        planned_end = t0_ns / 1e9 + math.ceil(1 / args.interval) * args.interval + args.seconds
        while not driver.state.done:
            time.sleep(max(0.05, min(1.0, planned_end - time.time())))
        return driver.report()
    finally:
        driver.close()


def measured(report: LoadReport) -> list[IntervalData]:
    return [i for i in report.intervals if i.phase == "measure" and i.complete]


def requests_per_sec(report: LoadReport, *, sent: bool) -> float:
    intervals = measured(report)
    if sent:
        count = sum(i.open_loop.sent for i in intervals if i.open_loop is not None)
    else:
        count = sum(i.requests for i in intervals)
    return count / (len(intervals) * report.interval_ns / 1e9)


def sample(share: float, rate: float, report: LoadReport) -> Sample:
    intervals = measured(report)
    loops = [i.open_loop for i in intervals if i.open_loop is not None]
    params = report.histogram
    lateness = merge_encoded((loop.lateness for loop in loops if loop.lateness), params)
    late_levels = percentiles(lateness, [50.0, 99.0]) if lateness.get_total_count() else {}
    waiting = merge_encoded((loop.lateness_waiting for loop in loops if loop.lateness_waiting),
                            params)
    own = without(lateness, waiting, params)
    own_p99 = percentiles(own, [99.0])[99.0] if own.get_total_count() else 0
    latency = latency_histogram(intervals, params)
    levels = percentiles(latency, [50.0, 99.0]) if latency.get_total_count() else {}
    if report.errors:
        note(f"errors: {report.errors}")
    return Sample(
        share=share,
        target=rate,
        achieved=requests_per_sec(report, sent=True),
        lateness_p50=late_levels.get(50.0, 0),
        lateness_p99=late_levels.get(99.0, 0),
        own_lateness_p99=own_p99,
        lateness_max=max((loop.lateness_max_usec for loop in loops), default=0),
        late=sum(loop.late for loop in loops),
        not_sent=max((loop.not_sent for loop in loops), default=0),
        latency_p50=levels.get(50.0, 0),
        latency_p99=levels.get(99.0, 0),
        calm_intervals=sum(1 for loop in loops if interval_lateness_p99(loop.lateness)
                           < TARGET_LATENESS_P99_USEC),
        intervals=len(intervals),
    )


def without(every, part, params: HistogramParams):  # type: ignore[no-untyped-def]
    """``every`` less ``part`` (recorded into it too), bucket by bucket: the lateness of the
    sends whose connection was free at their point, without those that queued behind an
    unanswered request (the server's delay, not the loop's)."""
    rest = params.empty()
    for index, (count, queued) in enumerate(zip(counts_view(every), counts_view(part),
                                                strict=True)):
        rest.counts[index] = count - queued
    rest.total_count = every.get_total_count() - part.get_total_count()
    return rest


def interval_lateness_p99(encoded: str | None) -> int:
    """One interval's lateness p99, µs (0: nothing was sent late).

    The intervals one at a time show whether late sends spread over the run (the loop's own
    cost) or gather in a few seconds (a stall of the host, which the floor also sees)."""
    if not encoded:
        return 0
    histogram = decode(encoded)
    return percentiles(histogram, [99.0])[99.0] if histogram.get_total_count() else 0


def latency_histogram(intervals: list[IntervalData], params: HistogramParams):  # type: ignore[no-untyped-def]
    merged = params.empty()
    for interval in intervals:
        for command in interval.commands.values():
            merged.add(decode(command.histogram))
    return merged


def show(closed: list[float], samples: dict[float, list[Sample]], floors: list[Floor],
         floors_busy: list[Floor], args: argparse.Namespace) -> None:
    pinned = f"load process pinned to CPU {CLIENT_CPU}" if args.pin else "not pinned"
    note(f"{args.connections} connections, 1 process, pipeline 1, {args.seconds} s measured, "
         f"{args.rounds} round(s), {pinned}; closed-loop capacity {median(closed):,.0f} "
         "requests/s")
    rows = []
    for runs in samples.values():
        for s in runs:
            rows.append([
                f"{s.share:.0%}", f"{s.target:,.0f}", f"{s.achieved:,.0f}", f"{s.error:+.2%}",
                s.lateness_p50, s.lateness_p99, s.own_lateness_p99, s.lateness_max, s.late,
                s.not_sent,
                s.latency_p50, s.latency_p99, f"{s.calm_intervals}/{s.intervals}",
            ])  # fmt: skip
    table(["share", "target/s", "achieved/s", "error", "late p50 µs", "late p99 µs",
           "own late p99 µs", "late max µs", "sent > 1 ms late", "not sent (max)", "lat p50 µs",
           "lat p99 µs",
           f"intervals late p99 < {TARGET_LATENESS_P99_USEC} µs"],
          rows, title="open loop at shares of the closed-loop capacity")  # fmt: skip
    table(["round", "other CPUs", "late p50 µs", "late p99 µs", "late max µs",
           "> 100 µs late per s"],
          [[str(index), others, f.p50, f.p99, f.largest, f"{f.over_100_per_s:,.1f}"]
           for others, found in (("idle", floors), ("busy", floors_busy))
           for index, f in enumerate(found, start=1)],
          title="the machine's floor: a Python loop doing nothing but keep the 50 % (or --rate) "
                "schedule, same CPU, same seconds (bench/_floor.py)")  # fmt: skip
    if 0.50 not in samples:
        return
    half = samples[0.50]
    error = median([abs(s.error) for s in half])
    p99 = median([float(s.lateness_p99) for s in half])
    verdict("achieved rate error at 50 %", f"{error:.2%}", f"<= {TARGET_ERROR:.0%}",
            error <= TARGET_ERROR)
    verdict("lateness p99 at 50 %", f"{p99:.0f} µs", f"< {TARGET_LATENESS_P99_USEC} µs",
            p99 < TARGET_LATENESS_P99_USEC)
    own = median([float(s.own_lateness_p99) for s in half])
    verdict("lateness p99 at 50 %, the loop's own (sends on a free connection)", f"{own:.0f} µs",
            f"< {TARGET_LATENESS_P99_USEC} µs", own < TARGET_LATENESS_P99_USEC)
    idle = median([float(f.p99) for f in floors])
    busy = median([float(f.p99) for f in floors_busy])
    stalls = median([f.over_100_per_s for f in floors_busy])
    print(f"the machine's floor at that schedule: lateness p99 {idle:.0f} µs with the other "
          f"CPUs idle, {busy:.0f} µs with them busy ({stalls:,.0f} points a second over 100 µs "
          "late); what a loop that does the work adds to those stalls is the open loop's part")


if __name__ == "__main__":
    sys.exit(run_interruptible(main))
