"""A load process's busy-poll time, shared with the agent's sampler as a counter in memory.

A load process that busy-polls (``benchmark.builtin.busy_poll_usec``) keeps a core busy while it
waits for replies: its CPU time, which the client-bound verdicts read, then counts the waiting
as work. So the process counts the CPU time it spends polling, and the agent's sampler reads
that count at the same instants as the process's CPU clock (:mod:`agent.metrics.procfs`): an
interval's polling is then deducted exactly, with no alignment between two reports.

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
from typing import Final

SIZE: Final = 8
_FORMAT: Final = "=q"


class SpinTally:
    """CPU time spent polling, kept by the process alone (no agent to share it with)."""

    def __init__(self) -> None:
        self.total_ns = 0

    def add(self, cpu_ns: int) -> None:
        self.total_ns += cpu_ns


class SpinCounter(SpinTally):
    """The load process's side: adds CPU time spent polling to the shared total."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._map = mmap.mmap(fd, SIZE)

    def add(self, cpu_ns: int) -> None:
        super().add(cpu_ns)
        struct.pack_into(_FORMAT, self._map, 0, self.total_ns)


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
