"""One load of an agent-side driver, called directly (no agent), and the CPU its one load
process used for it: what the per-client-core benchmarks share.

The load process's CPU is its rusage once reaped (user + system, the children's rusage of
this process before and after), minus what it had used when prepared: its set-up (the
request pool, the connections) is not the load's. This process's other threads (the driver's
reader of the load process's channel) are measured over the load too: the agent-side cost.
Not a test helper: nothing here asserts anything about speed.
"""

from __future__ import annotations

import json
import os
import resource
import time
from dataclasses import dataclass
from typing import Any

import psutil

from agent.drivers.intervals import LoadReport
from agent.drivers.kit.process_driver import ProcessDriver
from agent.drivers.kit.spin_counter import COUNTERS
from agent.drivers.spec import parse_spec

#: T0 this far after the load process is prepared.
START_MARGIN_S = 0.2
#: Longest wait for the load process to be reaped after the driver closed.
REAP_S = 10.0


@dataclass(frozen=True)
class DriverLoad:
    report: LoadReport
    load_cpu_s: float
    """The load process's CPU seconds from T0 to its end (its preparation left out)."""
    agent_cpu_s: float
    """This process's threads but the calling one, over the load (the driver's reader)."""
    busy_poll_cpu_s: float = 0.0
    """The part of ``load_cpu_s`` the load process spent busy-polling (its spin counter)."""


def run_load(driver: ProcessDriver, spec: dict[str, Any],
             cpus: set[int] | None = None) -> DriverLoad:
    """Prepare ``driver`` with ``spec`` (a spec's JSON form, one load process), on ``cpus`` if
    given, run it from a T0 just ahead to its end, close it; the report and the CPU it took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        prepared = parse_spec(json.dumps(spec))
        driver.prepare(prepared)
        (pid,) = driver.worker_pids()
        if cpus is not None:
            os.sched_setaffinity(pid, cpus)
        times = psutil.Process(pid).cpu_times()
        prepared_cpu = times.user + times.system
        agent_before = other_threads_cpu()
        t0 = time.time() + START_MARGIN_S
        spun_before = COUNTERS.spun_ns(pid) or 0
        driver.start_at(int(t0 * 1e9))
        planned_end = t0 + prepared.timeline.total_s
        while not driver.state.done:
            time.sleep(max(0.05, min(1.0, planned_end - time.time())))
        agent_cpu = other_threads_cpu() - agent_before
        spun_s = ((COUNTERS.spun_ns(pid) or 0) - spun_before) / 1e9
        report = driver.report()
    finally:
        driver.close()
    deadline = time.monotonic() + REAP_S
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return DriverLoad(report, worker_cpu - prepared_cpu, agent_cpu, spun_s)


def other_threads_cpu() -> float:
    """CPU seconds used so far by this process's threads other than the calling one (the
    driver's reader thread, here), summed over those alive and those that ended."""
    whole = resource.getrusage(resource.RUSAGE_SELF)
    mine = resource.getrusage(resource.RUSAGE_THREAD)
    return (whole.ru_utime + whole.ru_stime) - (mine.ru_utime + mine.ru_stime)
