"""A load process's busy-poll time, shared with the agent's sampler as a counter in memory.

A load process that polls without sleeping keeps a core busy while it waits: for replies
(``benchmark.builtin.busy_poll_usec``), or, in an open loop, for a point too close to sleep for
(``epoll`` sleeps whole milliseconds). Its CPU time, which the client-bound verdicts read, then
counts the waiting as work. So the process counts the CPU time it spends polling, and the
agent's sampler reads that count at the same instants as the process's CPU clock
(:mod:`agent.metrics.procfs`): an interval's polling is then deducted exactly, with no
alignment between two reports.

The count lives in 8 bytes of an anonymous shared file (``memfd_create``): the supervisor makes
one per load process, maps it, and passes its descriptor to the process, which maps it too and
writes its running total there (a native-endian signed 64-bit integer, nanoseconds of CPU time,
written whole). The agent keeps each process's mapping by pid in :data:`COUNTERS` until the
process is reaped. Nothing is written where no load process polls: the count stays 0.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Final

SIZE: Final = 8
PUBLISH_NS: Final = 1_000_000
_FORMAT: Final = "=q"


class SpinTally:
    """CPU time spent polling, kept by the process alone (no agent to share it with)."""

    def __init__(self) -> None:
        self.total_ns = 0

    def add(self, cpu_ns: int) -> None:
        self.total_ns += cpu_ns


class SpinCounter(SpinTally):
    """The load process's side: adds CPU time spent polling to the shared total, writing it
    there once it has grown by :data:`PUBLISH_NS` (a write costs 0.2 µs, and an open loop adds
    a few µs of polling between most of its points: written at every wait, it made the open
    loop's median send at 10 % of capacity 1 µs later, 3 µs against 2): the agent reads at most
    that much less than was spent, 0.1 % of a 1 s interval."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._map = mmap.mmap(fd, SIZE)
        self._published = 0

    def add(self, cpu_ns: int) -> None:
        total = self.total_ns = self.total_ns + cpu_ns
        if total - self._published >= PUBLISH_NS:
            struct.pack_into(_FORMAT, self._map, 0, total)
            self._published = total


STALL_NS: Final = 50_000
"""A gap this long between two polls of one episode was not polling: the thread was not
running (preempted, or its virtual CPU stalled); one poll takes a few hundred ns. A shorter
preemption is counted as polling: where a load process shares its core with a busy server, the
count can exceed the process's CPU time by a few points of a core (a lab test saw 92.1 % of
polling against 89.7 % of CPU), and the verdicts' load CPU, the difference, then reads 0."""


def poll_spinning(poll: Callable[[float], list[tuple[int, int]]], until_ns: int,
                  tally: SpinTally) -> tuple[list[tuple[int, int]], int]:
    """``poll`` without sleeping until something is ready or ``until_ns`` (perf clock) comes:
    what was ready (empty at ``until_ns``) and the perf-clock instant the polling saw it, read
    before the polling's own accounting (a reply's latency ends there). The time spent polling
    is added to ``tally``: the wall clock, less every gap over :data:`STALL_NS` between two
    polls, in which the thread did not run and so spent no CPU time.

    The wall clock, not the thread's CPU clock: that one is a system call (560 ns a read on
    the development VM against 48 ns), and an open loop at tens of thousands of requests a
    second polls between most of its points, a few µs each time. With this accounting the
    open loop's median send is about 0.5 µs later than without it (lateness p50 2 µs against
    1 at 60,000/s, bench/bench_open_loop.py)."""
    perf = time.perf_counter_ns
    began = last = perf()
    ready = poll(0.0)
    if ready:  # nothing to wait for: no polling to count
        return ready, perf()
    stalled = 0
    while not ready and (now := perf()) < until_ns:
        if now - last > STALL_NS:
            stalled += now - last
        last = now
        ready = poll(0.0)
    seen = perf()
    if seen - last > STALL_NS:
        stalled += seen - last
    tally.add(seen - began - stalled)
    return ready, seen


def new_counter_file() -> tuple[int, mmap.mmap]:
    """A fresh counter, at 0: its descriptor (for the load process; the caller closes it once
    the process is started) and the agent's mapping of it."""
    fd = os.memfd_create("coord-spin-counter", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, SIZE)
        return fd, mmap.mmap(fd, SIZE)
    except OSError:
        os.close(fd)
        raise


class SpinCounters:
    """The agent's side: every load process's counter, by pid (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._maps: dict[int, mmap.mmap] = {}

    def add(self, pid: int, mapping: mmap.mmap) -> None:
        with self._lock:
            self._maps[pid] = mapping

    def remove(self, pid: int) -> None:
        with self._lock:
            mapping = self._maps.pop(pid, None)
        if mapping is not None:
            mapping.close()

    def spun_ns(self, pid: int) -> int | None:
        """The CPU time process ``pid`` spent polling so far; None: not a load process."""
        with self._lock:
            mapping = self._maps.get(pid)
            if mapping is None:
                return None
            value: int = struct.unpack_from(_FORMAT, mapping, 0)[0]
            return value


COUNTERS: Final = SpinCounters()
"""This agent's load processes' counters (the supervisor adds and removes, the sampler reads)."""

_attached: SpinCounter | None = None


def attach(fd: int) -> None:
    """In a load process: the counter the agent passed (see :func:`attached`)."""
    global _attached  # noqa: PLW0603 - one counter per process, set once at its start
    _attached = SpinCounter(fd)
    os.close(fd)


def attached() -> SpinCounter | None:
    """In a load process: its counter, None if the agent passed none (a bench, a test)."""
    return _attached
