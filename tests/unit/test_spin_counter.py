"""The busy-poll counter a load process shares with the agent (agent/drivers/kit/spin_counter.py):
the writer's total is what the reader reads, through a real shared memory file; and the polling
whose CPU time goes into it."""

from __future__ import annotations

import os
import time

from agent.drivers.kit import spin_counter
from agent.drivers.kit.spin_counter import SpinCounter, SpinCounters, new_counter_file


def test_what_a_load_process_adds_the_agent_reads_by_pid() -> None:
    fd, mapping = new_counter_file()
    counters = SpinCounters()
    counters.add(4242, mapping)
    writer = SpinCounter(os.dup(fd))  # the load process's own descriptor of the same file
    os.close(fd)
    assert counters.spun_ns(4242) == 0
    writer.add(1_500)
    assert counters.spun_ns(4242) == 0  # written once it has grown by PUBLISH_NS
    writer.add(spin_counter.PUBLISH_NS - 1_500)
    assert counters.spun_ns(4242) == writer.total_ns == spin_counter.PUBLISH_NS
    writer.add(2**40)
    assert counters.spun_ns(4242) == writer.total_ns == spin_counter.PUBLISH_NS + 2**40
    assert counters.spun_ns(4243) is None  # not a load process of this agent
    counters.remove(4242)
    assert counters.spun_ns(4242) is None
    counters.remove(4242)  # removing twice is harmless


def test_the_counter_file_is_not_inherited_by_other_children() -> None:
    fd, mapping = new_counter_file()
    try:
        assert not os.get_inheritable(fd)  # passed on only where the supervisor says so
    finally:
        mapping.close()
        os.close(fd)


def test_polling_spins_until_something_is_ready_and_counts_its_cpu_time() -> None:
    answers = iter([[], [], [(7, 1)]])
    tally = spin_counter.SpinTally()
    began = time.perf_counter_ns()
    ready, seen = spin_counter.poll_spinning(lambda _timeout: next(answers), began + 10**9, tally)
    assert ready == [(7, 1)] and began < seen <= time.perf_counter_ns()
    assert next(answers, None) is None  # polled until it came, not a poll more


def test_polling_stops_at_the_instant_given_empty_handed_and_the_wait_is_counted() -> None:
    timeouts: list[float] = []

    def poll(timeout: float) -> list[tuple[int, int]]:
        timeouts.append(timeout)
        return []

    tally = spin_counter.SpinTally()
    began = time.perf_counter_ns()
    ready, seen = spin_counter.poll_spinning(poll, began + 2_000_000, tally)
    assert ready == [] and seen >= began + 2_000_000
    assert set(timeouts) == {0.0} and len(timeouts) > 1  # never a sleeping poll
    # spinning 2 ms is counted (less any gap in which the thread was not running), and no
    # more than the wall time
    assert 0 < tally.total_ns <= time.perf_counter_ns() - began


def test_a_gap_in_which_the_thread_did_not_run_is_not_counted() -> None:
    """A poll that took 5 ms (here a sleep: the thread preempted, or its vCPU stalled) spent
    no CPU time polling."""
    calls = 0

    def poll(_timeout: float) -> list[tuple[int, int]]:
        nonlocal calls
        calls += 1
        if calls == 3:
            time.sleep(0.005)
        return [(7, 1)] if calls == 6 else []

    tally = spin_counter.SpinTally()
    began = time.perf_counter_ns()
    ready, seen = spin_counter.poll_spinning(poll, began + 10**9, tally)
    assert ready == [(7, 1)]
    assert seen - began >= 5_000_000
    assert 0 < tally.total_ns < 1_000_000  # the 5 ms left out; the polling around it counted


def test_a_reply_ready_at_once_is_no_polling() -> None:
    tally = spin_counter.SpinTally()
    ready, _seen = spin_counter.poll_spinning(lambda _timeout: [(7, 1)],
                                              time.perf_counter_ns() + 10**9, tally)
    assert (ready, tally.total_ns) == ([(7, 1)], 0)
