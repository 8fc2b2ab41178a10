"""The busy-poll counter a load process shares with the agent (agent/drivers/kit/spin_counter.py):
the writer's total is what the reader reads, through a real shared memory file."""

from __future__ import annotations

import os

from agent.drivers.kit.spin_counter import SpinCounter, SpinCounters, new_counter_file


def test_what_a_load_process_adds_the_agent_reads_by_pid() -> None:
    fd, mapping = new_counter_file()
    counters = SpinCounters()
    counters.add(4242, mapping)
    writer = SpinCounter(os.dup(fd))  # the load process's own descriptor of the same file
    os.close(fd)
    assert counters.spun_ns(4242) == 0
    writer.add(1_500)
    writer.add(2**40)
    assert counters.spun_ns(4242) == writer.total_ns == 1_500 + 2**40
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
