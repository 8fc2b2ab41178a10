"""/proc read into typed snapshots of cumulative counters (Linux).

Each reader returns its part of a snapshot or raises ``OSError``/``ValueError``; the sampler
records a part that failed as missing, with the reason. Parsers take the file's text so they
are tested without /proc. A watched process may exit between two reads: it is then absent from
the snapshot (:func:`read_process`: None), never an error.

CPU times are read in nanoseconds, not in the clock ticks of ``/proc/<pid>/stat``: a tick is
10 ms, and a server held to 0.2 of a core uses 10 ticks in a 500 ms interval, so one tick more
or less read it as 90 % or 110 % of its limit, right at the server-bound verdict's 90 %
threshold. A process's time is its CPU-time clock (what ``clock_getcpuclockid(3)`` gives; any
process's can be read, a zombie's too): the time of every thread it ran, those that ended
included. Its ``/proc/<pid>/schedstat`` would not do: that is its main thread's alone (a
memtier with four threads would read as a quarter of its CPU). A thread's time is its own
schedstat. Where either is missing (a kernel without ``CONFIG_SCHED_INFO`` or CPU clocks)
the ticks are used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

PROC: Final = Path("/proc")
#: Clock ticks per second: the unit of /proc/stat and /proc/<pid>/stat times.
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_CPUCLOCK_SCHED: Final = 2


@dataclass(frozen=True)
class CpuTicks:
    """One /proc/stat ``cpu`` line, in clock ticks (guest time is inside user)."""

    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int

    @property
    def total(self) -> int:
        return (self.user + self.nice + self.system + self.idle + self.iowait + self.irq
                + self.softirq + self.steal)


@dataclass(frozen=True)
class SystemStat:
    """/proc/stat: all cores, each core, context switches since boot."""

    total: CpuTicks
    cores: tuple[CpuTicks, ...]
    context_switches: int


@dataclass(frozen=True)
class Interface:
    """One /proc/net/dev line: cumulative counters."""

    bytes_received: int
    packets_received: int
    bytes_sent: int
    packets_sent: int


@dataclass(frozen=True)
class TcpCounters:
    """Cumulative TCP counters of the host's network namespace."""

    retransmits: int
    listen_drops: int
    listen_overflows: int


@dataclass(frozen=True)
class Memory:
    total_bytes: int
    available_bytes: int


@dataclass(frozen=True)
class ProcessTimes:
    """One process: its CPU time and each thread's (thread id -> CPU time), ns; for a load
    process, the CPU time it spent busy-polling (:mod:`agent.drivers.kit.spin_counter`)."""

    pid: int
    name: str
    cpu_ns: int
    threads: Mapping[int, int]
    spin_ns: int | None = None
    ports: tuple[int, ...] = ()
    """A server process: the target ports it listens on (empty for a load process)."""


def parse_stat(text: str) -> SystemStat:
    total: CpuTicks | None = None
    cores: list[CpuTicks] = []
    switches: int | None = None
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0].startswith("cpu"):
            values = [int(value) for value in fields[1:9]] + [0] * (8 - len(fields[1:9]))
            ticks = CpuTicks(*values)
            if fields[0] == "cpu":
                total = ticks
            else:
                cores.append(ticks)
        elif fields[0] == "ctxt":
            switches = int(fields[1])
    if total is None or switches is None:
        raise ValueError("no cpu or ctxt line")
    return SystemStat(total, tuple(cores), switches)


def parse_net_dev(text: str) -> dict[str, Interface]:
    interfaces = {}
    for line in text.splitlines()[2:]:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if len(fields) < 10:
            continue
        interfaces[name.strip()] = Interface(
            bytes_received=int(fields[0]), packets_received=int(fields[1]),
            bytes_sent=int(fields[8]), packets_sent=int(fields[9]),
        )  # fmt: skip
    return interfaces


def parse_counter_table(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/snmp and /proc/net/netstat: pairs of lines (names, then values) per prefix."""
    tables: dict[str, dict[str, int]] = {}
    lines = text.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        prefix, _, name_text = names.partition(":")
        value_prefix, _, value_text = values.partition(":")
        if prefix != value_prefix:
            raise ValueError(f"unpaired lines {prefix!r} and {value_prefix!r}")
        tables[prefix] = {
            name: int(value) for name, value in zip(name_text.split(), value_text.split(),
                                                    strict=False)
        }
    return tables


def tcp_counters(snmp_text: str, netstat_text: str) -> TcpCounters:
    snmp = parse_counter_table(snmp_text)
    extended = parse_counter_table(netstat_text)
    return TcpCounters(
        retransmits=snmp["Tcp"]["RetransSegs"],
        listen_drops=extended["TcpExt"]["ListenDrops"],
        listen_overflows=extended["TcpExt"]["ListenOverflows"],
    )


def parse_meminfo(text: str) -> Memory:
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields:
            values[name] = int(fields[0]) * 1024
    return Memory(total_bytes=values["MemTotal"], available_bytes=values["MemAvailable"])


def parse_loadavg(text: str) -> float:
    return float(text.split(maxsplit=1)[0])


def parse_process_stat(text: str) -> tuple[str, int]:
    """A /proc/<pid>/stat line: the command name and utime + stime, in ticks. The name is in
    parentheses and may hold spaces and parentheses itself: split at the last one."""
    head, _, tail = text.rpartition(")")
    name = head.partition("(")[2]
    fields = tail.split()
    return name, int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)


def read_text(path: Path) -> str:
    with path.open(encoding="ascii", errors="replace") as stream:
        return stream.read()


def read_stat(proc: Path = PROC) -> SystemStat:
    return parse_stat(read_text(proc / "stat"))


def read_net_dev(proc: Path = PROC) -> dict[str, Interface]:
    return parse_net_dev(read_text(proc / "net" / "dev"))


def read_tcp(proc: Path = PROC) -> TcpCounters:
    return tcp_counters(read_text(proc / "net" / "snmp"), read_text(proc / "net" / "netstat"))


def read_memory(proc: Path = PROC) -> Memory:
    return parse_meminfo(read_text(proc / "meminfo"))


def read_loadavg(proc: Path = PROC) -> float:
    return parse_loadavg(read_text(proc / "loadavg"))


def parse_schedstat(text: str) -> int:
    """A /proc/<pid>/schedstat line: the time spent running, ns (its first field)."""
    return int(text.split(maxsplit=1)[0])


def cpu_time_ns(directory: Path) -> int:
    """The CPU time, ns, of the thread whose /proc directory this is: from its schedstat,
    else (a kernel without one) from its stat's ticks. ``FileNotFoundError`` if it is gone."""
    try:
        return parse_schedstat(read_text(directory / "schedstat"))
    except FileNotFoundError:
        if not directory.exists():
            raise
    return _ticks_ns(directory)


def process_clock_ns(pid: int) -> int | None:
    """The CPU time, ns, of every thread process ``pid`` ran, ended ones included: its CPU-time
    clock. None if the clock cannot be read (the process was reaped, or no such clocks)."""
    try:
        return time.clock_gettime_ns(process_clock_id(pid))
    except OSError:
        return None


def process_clock_id(pid: int) -> int:
    """The clock id of process ``pid``'s CPU time: Linux's ``MAKE_PROCESS_CPUCLOCK(pid,
    CPUCLOCK_SCHED)``, what glibc's ``clock_getcpuclockid`` returns (Python has no binding)."""
    return (~pid << 3) | _CPUCLOCK_SCHED


ProcessClock = Callable[[int], int | None]


def read_process(pid: int, proc: Path = PROC,
                 process_clock: ProcessClock = process_clock_ns) -> ProcessTimes | None:
    """A process's CPU time and its threads'; None if it is gone (it may exit at any read)."""
    base = proc / str(pid)
    try:
        name = parse_process_stat(read_text(base / "stat"))[0]
        threads = {}
        for entry in os.scandir(base / "task"):
            try:
                threads[int(entry.name)] = cpu_time_ns(Path(entry.path))
            except (FileNotFoundError, ProcessLookupError):
                continue  # this thread ended between the listing and the read
        cpu_ns = process_clock(pid)
        if cpu_ns is None:
            cpu_ns = _ticks_ns(base)
    except (FileNotFoundError, ProcessLookupError):
        return None
    return ProcessTimes(pid, name, cpu_ns, threads)


def _ticks_ns(directory: Path) -> int:
    ticks = parse_process_stat(read_text(directory / "stat"))[1]
    return ticks * 1_000_000_000 // CLOCK_TICKS


def read_processes(pids: Iterable[int], proc: Path = PROC) -> dict[int, ProcessTimes]:
    """The processes of ``pids`` that still exist."""
    found = {}
    for pid in pids:
        times = read_process(pid, proc)
        if times is not None:
            found[pid] = times
    return found
