"""The metrics messages: what ``start_metrics`` asks for and what ``metrics_report`` answers.

Frozen dataclasses read and written by :mod:`agent.messages` (its strict reader refuses an
unknown, missing or mistyped field). Every figure is over one interval of the run's grid:
CPU as a percentage of the interval (of all cores for the host, of one core for a process or
a thread), counters as the increase over the interval. A figure that could not be read is None
and its name is in the interval's ``missing``, with the reason. Pure: standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

#: The metrics report format written by this agent.
METRICS_FORMAT: Final = 1
#: The phases of a metrics interval: before T0 (from ``start_metrics``), the load's two phases,
#: and after the load's planned end (until ``metrics_report``).
METRICS_PHASES: Final = ("before", "warmup", "measure", "after")
#: When Redis INFO is taken: at T0 and at the load's planned end.
INFO_MOMENTS: Final = ("start", "end")
#: The INFO sections taken.
INFO_SECTIONS: Final = ("server", "clients", "cpu", "stats", "memory", "commandstats")


@dataclass(frozen=True)
class RedisTarget:
    """Where the server host's agent asks for Redis INFO (the run's target)."""

    address: str
    port: int
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    tls: bool = False


@dataclass(frozen=True)
class MetricsPlan:
    """``start_metrics()``'s request. ``intervals`` (warm-up + measure) and ``interval_ns`` are
    the load's timeline; ``server_ports``: TCP ports of the target servers on this host (their
    processes are watched); ``redis``: the target to take INFO from (server host only)."""

    interval_ns: int
    warmup_intervals: int
    intervals: int
    server_ports: tuple[int, ...] = ()
    redis: RedisTarget | None = None

    def __post_init__(self) -> None:
        if self.interval_ns <= 0:
            raise ValueError(f"interval_ns must be > 0, got {self.interval_ns}")
        if self.intervals < 1 or self.warmup_intervals < 0:
            raise ValueError("intervals must be >= 1 and warmup_intervals >= 0")

    def phase(self, index: int) -> str:
        if index < 0:
            return "before"
        if index < self.warmup_intervals:
            return "warmup"
        return "measure" if index < self.intervals else "after"


@dataclass(frozen=True)
class MetricsStarted:
    """``start_metrics()`` and ``align_metrics()``: sampling goes on; ``t0_ns`` once aligned."""

    t0_ns: int | None = None


@dataclass(frozen=True)
class CpuShare:
    """Where a CPU's time went over an interval, % of the interval (0..100 each)."""

    user: float
    system: float
    irq: float
    softirq: float
    steal: float
    iowait: float
    idle: float

    @property
    def busy(self) -> float:
        """Everything but idle and iowait."""
        return max(0.0, 100.0 - self.idle - self.iowait)


@dataclass(frozen=True)
class ProcessCpu:
    """One watched process over an interval: CPU as % of one core (above 100 when several
    threads run at once), and its hottest thread's; for a load process, the part of its CPU
    spent busy-polling (``busy_poll_percent``, None for other processes); for a server
    process, the target ports it listens on (``ports``); its threads that did work
    (``busy_threads``, :data:`BUSY_THREAD_PERCENT`)."""

    pid: int
    name: str
    cpu_percent: float
    threads: int
    hottest_thread: int | None
    hottest_thread_percent: float | None
    busy_poll_percent: float | None = None
    ports: tuple[int, ...] = ()
    busy_threads: int | None = None


BUSY_THREAD_PERCENT = 5.0
"""A thread using at least this much of a core over an interval is doing work: a server's
busy threads are the cores it can keep busy at once (Redis 1, or more with io-threads; a
multi-threaded server such as Dragonfly or memcached, its workers)."""


@dataclass(frozen=True)
class InterfaceTraffic:
    """One network interface over an interval (increases of /proc/net/dev's counters)."""

    bytes_received: int
    bytes_sent: int
    packets_received: int
    packets_sent: int


@dataclass(frozen=True)
class Throttling:
    """The CPU quota of the cgroup the agent runs in (the closest one with a quota) and its
    throttling over an interval (increases of cpu.stat's counters)."""

    cgroup: str
    version: str
    quota_cores: float
    periods: int
    throttled_periods: int
    throttled_usec: int


@dataclass(frozen=True)
class MetricsInterval:
    """One interval of the grid: ``index`` as the load's (-1 before T0), ``start_ns`` and
    ``end_ns`` in the agent's clock (the snapshots'), ``missing``: figure name -> reason."""

    index: int
    phase: str
    start_ns: int
    end_ns: int
    cpu: CpuShare | None
    cores: tuple[CpuShare, ...]
    load_average_1m: float | None
    memory_used_bytes: int | None
    memory_available_bytes: int | None
    interfaces: Mapping[str, InterfaceTraffic]
    tcp_retransmits: int | None
    listen_drops: int | None
    listen_overflows: int | None
    context_switches: int | None
    throttling: Throttling | None
    load_processes: tuple[ProcessCpu, ...]
    server_processes: tuple[ProcessCpu, ...]
    missing: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.phase not in METRICS_PHASES:
            raise ValueError(f"phase {self.phase!r} is not one of {', '.join(METRICS_PHASES)}")
        if self.end_ns < self.start_ns:
            raise ValueError("end_ns must not be before start_ns")


@dataclass(frozen=True)
class LatestMetrics:
    """``latest_metrics()``: the last interval sampled so far (None: none yet, or no
    sampling), for the live view; sampling goes on."""

    interval: MetricsInterval | None = None


@dataclass(frozen=True)
class RedisInfo:
    """Redis INFO at ``moment`` (start or end of the load): section -> field -> value, as the
    server wrote them; ``problem`` when it could not be taken (then no sections)."""

    moment: str
    taken_ns: int
    sections: Mapping[str, Mapping[str, str]]
    problem: str | None = None

    def __post_init__(self) -> None:
        if self.moment not in INFO_MOMENTS:
            raise ValueError(f"moment {self.moment!r} is not one of {', '.join(INFO_MOMENTS)}")


@dataclass(frozen=True)
class MetricsReport:
    """``metrics_report()``: every interval sampled since ``start_metrics``, in order, and
    Redis INFO (server host). ``t0_ns`` None: never aligned; ``missing``: figures not sampled
    at all on this host, with the reason (no cgroup quota is not missing: throttling None)."""

    interval_ns: int
    t0_ns: int | None
    intervals: tuple[MetricsInterval, ...]
    redis_info: tuple[RedisInfo, ...]
    missing: Mapping[str, str]
    format: int = METRICS_FORMAT

    def __post_init__(self) -> None:
        if self.format != METRICS_FORMAT:
            raise ValueError(f"format {self.format!r} is not {METRICS_FORMAT}")
