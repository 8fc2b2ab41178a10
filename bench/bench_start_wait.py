"""The ways to wait for T0 alone, without a lab: how precisely N processes on this machine wake
at a common instant, and how late a 1 ms sleeper beside them wakes meanwhile.

Isolates the wait (``agent.drivers.kit.timed.wait_for_t0``) from everything else a run's start
goes through (the start message over RPyC and SSH, the first sends): ``bench_start_skew.py``
measures the whole. Per start wait and number of processes: over ``--rounds`` rounds, each
process waits for a T0 50 ms ahead and reads the clock as the wait returns; the skew is the
latest reading minus the earliest, the lateness the latest minus T0.

    .venv/bin/python bench/bench_start_wait.py [--processes 2 4] [--rounds 20]
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import sys
import time
from multiprocessing.connection import Connection

import _lab

from agent.drivers.channel import Channel
from agent.drivers.kit.timed import lower_timer_slack, wait_for_t0
from agent.drivers.spec import START_WAITS

LEAD_NS = 50_000_000


def waiter(pipe: Connection) -> None:
    """Wait for each T0 received the way received; answer the clock read as the wait ended."""
    agent_end, load_end = socket.socketpair()
    channel = Channel(load_end)
    while (order := pipe.recv()) is not None:
        t0_ns, how = order
        wait_for_t0(channel, t0_ns, how)
        pipe.send(time.time_ns())
    agent_end.close()


def sleeper(pipe: Connection) -> None:
    """Sleep 1 ms at a time until told to stop; answer the latest wake-up's delay."""
    lower_timer_slack()
    worst = 0
    while not pipe.poll():
        asked = time.time_ns() + 1_000_000
        time.sleep(0.001)
        worst = max(worst, time.time_ns() - asked)
    pipe.recv()
    pipe.send(worst)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rows = []
    for count in args.processes:
        for how in START_WAITS:
            pipes, workers = [], []
            for _ in range(count):
                ours, theirs = multiprocessing.Pipe()
                worker = multiprocessing.Process(target=waiter, args=(theirs,))
                worker.start()
                pipes.append(ours)
                workers.append(worker)
            skews, lates, neighbour = [], [], []
            for _ in range(args.rounds):
                ours, theirs = multiprocessing.Pipe()
                probe = multiprocessing.Process(target=sleeper, args=(theirs,))
                probe.start()
                t0_ns = time.time_ns() + LEAD_NS
                for pipe in pipes:
                    pipe.send((t0_ns, how))
                woke = [pipe.recv() for pipe in pipes]
                ours.send(None)
                neighbour.append(ours.recv() / 1e9)
                probe.join()
                skews.append((max(woke) - min(woke)) / 1e9)
                lates.append((max(woke) - t0_ns) / 1e9)
            for pipe, worker in zip(pipes, workers, strict=True):
                pipe.send(None)
                worker.join()
            rows.append([how, str(count),
                         *(_lab.us(_lab.percentile(skews, q)) for q in (50, 99, 100)),
                         _lab.us(_lab.median(lates)), _lab.us(max(lates)),
                         _lab.us(_lab.median(neighbour)), _lab.us(max(neighbour))])
    _lab.header(f"waiting for T0 alone, {args.rounds} rounds")
    _lab.table(["start wait", "processes", "skew p50", "skew p99", "skew max", "late (median)",
                "late (max)", "neighbour late (median)", "neighbour late (max)"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
