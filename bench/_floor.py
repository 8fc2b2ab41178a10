"""The machine's own floor for a loop that keeps a schedule: a Python process that does nothing
but wait for each intended time (spinning, as the open loop does when its points are closer
than the 1-2 ms it can sleep) and records how late it got there. Whatever lateness it sees is
the host's (preemption, other tenants of a shared VM, the kernel's interrupts), not a load
driver's: an anchor for the open loop's lateness, measured in the same run on the same CPU.

Measured twice: with the other CPUs idle, and with a process spinning on each of them, as
redis-server and the agent keep them busy while a load runs. On this 2-vCPU VM the host's
stalls came and went with neither (2026-11-30, 55 000 points/s, 5 s each): once 237 points a
second over 100 µs late with the sibling busy against 0.8 with it idle; three rounds later,
1.4-5.0 busy and 1.6-48.8 idle, stalls of up to 4 ms.

    python bench/_floor.py RATE SECONDS     (the child: prints {µs: count} as JSON)

Not a test helper: nothing here asserts anything about speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Floor:
    """How late a do-nothing loop reached its points (µs), and how often over 100 µs."""

    p50: int
    p99: int
    largest: int
    over_100_per_s: float


def schedule_floor(rate: float, seconds: float, cpu: int | None, *,
                   busy_others: bool = False) -> Floor:
    """Run the do-nothing loop at ``rate`` points/s for ``seconds``, on ``cpu`` if given;
    with ``busy_others``, a process spins on each of the other CPUs meanwhile."""
    others = sorted(os.sched_getaffinity(0) - ({cpu} if cpu is not None else set()))
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in (others if busy_others else [])]
    child: subprocess.Popen[str] | None = None
    try:
        for burner, other in zip(burners, others, strict=False):
            os.sched_setaffinity(burner.pid, {other})
        child = subprocess.Popen([sys.executable, str(Path(__file__)), str(rate), str(seconds)],
                                 stdout=subprocess.PIPE, text=True)
        if cpu is not None:
            os.sched_setaffinity(child.pid, {cpu})
        out, _ = child.communicate(timeout=seconds + 30)
    finally:
        for process in (*burners, child):  # (the loop itself too, if interrupted)
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    counts = {int(usec): count for usec, count in json.loads(out).items()}
    total = sum(counts.values())
    ordered = sorted(counts.items())

    def rank(share: float) -> int:
        wanted, seen = share * total, 0
        for usec, count in ordered:
            seen += count
            if seen >= wanted:
                return usec
        return ordered[-1][0]

    over = sum(count for usec, count in ordered if usec > 100)
    return Floor(rank(0.50), rank(0.99), ordered[-1][0], over / seconds)


def main(rate: float, seconds: float) -> None:
    perf = time.perf_counter_ns
    period = 1e9 / rate
    counts: dict[int, int] = {}
    began = perf() + 100_000_000  # (the parent pins this process meanwhile)
    points = int(rate * seconds)
    for index in range(points):
        due = began + int(index * period)
        now = perf()
        while now < due:
            now = perf()
        late = (now - due + 500) // 1000
        counts[late] = counts.get(late, 0) + 1
    print(json.dumps(counts))


if __name__ == "__main__":
    main(float(sys.argv[1]), float(sys.argv[2]))
