"""The driver kit (agent/drivers/kit/): the T0 grid, pure; and a whole second driver made of
nothing but the kit (tests/unit/kit_sample_load.py), run in real load processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.drivers import DRIVERS
from agent.drivers.base import LoadState, Prepared
from agent.drivers.channel import Channel
from agent.drivers.kit.spin_counter import COUNTERS
from agent.drivers.kit.supervisor import exit_status_unreaped
from agent.drivers.kit.timed import IntervalGrid, wait_for_t0
from agent.drivers.spec import START_WAITS, Timeline, parse_spec
from agent.messages import MessageError, decode, encode
from agent.metrics import procfs
from coordinator.run.loadspec import SPEC_PARAMS
from tests.helpers import poll_until, process_gone
from tests.unit.kit_sample_load import TICK_SPIN_NS, TickDriver

DEADLINE = 30.0
INTERVAL_NS = 1_000_000


@given(
    warmup=st.integers(0, 5),
    measure=st.integers(1, 5),
    late_ns=st.integers(0, 12 * INTERVAL_NS),
    steps=st.lists(st.integers(0, 3 * INTERVAL_NS), min_size=1, max_size=40),
)
def test_the_grid_rolls_each_interval_once_in_order(
    warmup: int, measure: int, late_ns: int, steps: list[int]
) -> None:
    timeline = Timeline(INTERVAL_NS, warmup, measure)
    perf = 5_000_000_000
    grid = IntervalGrid.at_first_send(timeline, 1_000, 1_000 + late_ns, perf)
    first = late_ns // INTERVAL_NS
    rolled: list[tuple[int, bool]] = []
    for step in [*steps, timeline.total_ns + INTERVAL_NS]:
        perf += step
        rolled.extend(grid.roll(perf))
    assert [index for index, _ in rolled] == list(range(first, timeline.intervals))
    assert grid.over
    on_time = late_ns - first * INTERVAL_NS <= INTERVAL_NS // 100
    expected = [on_time] + [True] * (len(rolled) - 1) if rolled else []
    assert [complete for _, complete in rolled] == expected


def test_each_agent_driver_has_its_coordinator_spec_builder() -> None:
    assert set(SPEC_PARAMS) == set(DRIVERS)


def test_the_prepare_answer_reads_strictly() -> None:
    answer = Prepared(2, 8, "tick", "tick 1", None, "CPython 3.11.7 (/usr/bin/python3)")
    assert decode(Prepared, json.loads(json.dumps(encode(answer)))) == answer
    with pytest.raises(MessageError, match=r"^extra: unknown field$"):
        decode(Prepared, {**encode(answer), "extra": 1})
    with pytest.raises(MessageError, match=r"^processes: expected an integer, got '2'$"):
        decode(Prepared, {**encode(answer), "processes": "2"})


def spec(measure: int) -> str:
    return json.dumps({
        "format": 2, "driver": "tick",
        "target": {"address": "127.0.0.1", "port": 1, "password": None, "username": None,
                   "tls": None},
        "timeline": {"interval_ns": 50_000_000, "warmup_intervals": 1,
                     "measure_intervals": measure},
        "histogram": {"lowest_usec": 1, "highest_usec": 60_000_000, "significant_figures": 3},
        "params": {"processes": 2},
    })


@pytest.fixture
def driver() -> Iterator[TickDriver]:
    made = TickDriver()
    yield made
    made.close()


def gone(pids: list[int]) -> bool:
    """No process left (a zombie is gone: only its parent's reaping is missing)."""
    return all(process_gone(pid) for pid in pids)


def test_a_driver_made_of_the_kit_runs_reports_and_cleans_up(driver: TickDriver) -> None:
    prepared = driver.prepare(parse_spec(spec(measure=3)))
    assert (prepared.driver, prepared.processes, prepared.connections) == ("tick", 2, 0)
    pids = driver.worker_pids()
    assert len(pids) == 2 and all(psutil.Process(pid).ppid() == os.getpid() for pid in pids)
    driver.start_at(time.time_ns() + 100_000_000)
    poll_until(lambda: driver.state.done, DEADLINE, "the tick load to end")
    assert driver.state is LoadState.FINISHED
    report = driver.report()
    assert [i.index for i in report.intervals] == [0, 1, 2, 3]
    assert [i.phase for i in report.intervals] == ["warmup", "measure", "measure", "measure"]
    assert [i.count for i in report.intervals] == [2, 2, 2, 2]  # one tick per process
    assert all(i.requests == 2 for i in report.intervals)
    # Each interval was merged once both processes had sent it, and their raw counts dropped:
    # a long run's counts of many processes would not fit in memory (process_driver.py).
    kept = [part for process in driver._processes for part in process.intervals.values()]
    assert len(kept) == 8 and all(not getattr(part, "commands", None) for part in kept)
    # Exited, and left unreaped until close: their CPU time stays readable for the sampler.
    poll_until(lambda: gone(pids), DEADLINE, "the load processes to exit")
    assert all(procfs.process_clock_ns(pid) is not None for pid in pids)
    # Each process's busy-poll counter reached the agent: 4 ticks of TICK_SPIN_NS each.
    assert [COUNTERS.spun_ns(pid) for pid in pids] == [4 * TICK_SPIN_NS] * 2
    driver.close()
    assert not any(psutil.pid_exists(pid) for pid in pids)  # reaped
    assert [COUNTERS.spun_ns(pid) for pid in pids] == [None, None]  # and forgotten


def test_an_exit_status_is_read_without_reaping_the_child() -> None:
    exiting = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert exit_status_unreaped(killed.pid, 0.05) is None  # still running
        killed.kill()
        assert exit_status_unreaped(exiting.pid, DEADLINE) == 3
        assert exit_status_unreaped(killed.pid, DEADLINE) == -signal.SIGKILL
        assert psutil.Process(exiting.pid).status() == psutil.STATUS_ZOMBIE
    finally:
        killed.kill()
        assert (exiting.wait(), killed.wait()) == (3, -signal.SIGKILL)  # reaped here
    assert exit_status_unreaped(exiting.pid, 0.05) is None


def test_a_stopped_kit_load_reports_its_last_interval_incomplete(driver: TickDriver) -> None:
    driver.prepare(parse_spec(spec(measure=1000)))
    pids = driver.worker_pids()
    driver.start_at(time.time_ns() + 100_000_000)
    poll_until(lambda: (driver.progress().interval or 0) >= 2, DEADLINE, "interval 2")
    driver.stop()
    assert driver.state is LoadState.STOPPED
    report = driver.report()
    assert not report.intervals[-1].complete
    # The first interval is complete only if the load process started on time, which a busy
    # machine does not promise (a late start makes it partial, as it should); the ones between
    # the first and the stopped one are whole.
    assert all(interval.complete for interval in report.intervals[1:-1]), [
        (interval.index, interval.complete) for interval in report.intervals]
    driver.close()
    poll_until(lambda: gone(pids), DEADLINE, "the load processes to exit")


@pytest.mark.parametrize("how", START_WAITS)
def test_each_start_wait_returns_at_t0_or_after_and_yields_to_a_stop(how: str) -> None:
    agent_end, load_end = socket.socketpair()
    with agent_end, load_end:
        channel = Channel(load_end)
        t0_ns = time.time_ns() + 30_000_000
        assert wait_for_t0(channel, t0_ns, how)
        assert time.time_ns() >= t0_ns
        Channel(agent_end).send({"type": "stop"})
        assert not wait_for_t0(channel, time.time_ns() + 3600 * 10**9, how)
