"""The system metrics of a repetition as ``results.json`` stores them: per host, per interval.
Pure: no I/O.

Each agent samples its host on the load's interval grid (:mod:`agent.metrics`); its
:class:`~agent.metrics.model.MetricsReport` becomes one :class:`HostMetrics` here, stored in the
repetition (``Repetition.metrics``). ``HostInterval.index`` is the load's interval index (the
same as ``AgentRepetition.intervals[].index``; -1 before T0), so a verdict lines up a host's
CPU with the throughput of the same interval. Every figure that could not be read is null, and
named in ``missing`` with the reason; a host whose agent could not sample at all has no
intervals and ``missing["all"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt

from agent import messages
from agent.metrics.model import MetricsInterval, MetricsReport, RedisInfo

Percent = NonNegativeFloat


class MetricsModel(BaseModel):
    """Base of the metrics records: strict types, unknown keys refused, immutable (as every
    results model)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class CpuRecord(MetricsModel):
    """Where a CPU's time went in the interval, % of the interval (of all cores for the host's
    total, of one core in ``cores``)."""

    user: Percent = Field(description="user and nice time, %")
    system: Percent = Field(description="kernel time, %")
    irq: Percent = Field(description="hardware interrupts, %")
    softirq: Percent = Field(description="software interrupts (network receive, ...), %")
    steal: Percent = Field(description="taken by the hypervisor for other guests, %")
    iowait: Percent = Field(description="idle while waiting for I/O, %")
    idle: Percent = Field(description="idle, %")
    busy: Percent = Field(description="100 - idle - iowait, %")


class ProcessRecord(MetricsModel):
    """One watched process in the interval."""

    pid: int = Field(description="process id on its host")
    name: str = Field(description="command name (/proc/<pid>/stat)")
    cpu_percent: Percent = Field(
        description="CPU used, % of one core (above 100 when threads run at once)"
    )
    threads: NonNegativeInt = Field(description="threads at the end of the interval")
    hottest_thread: int | None = Field(description="id of the thread that used the most CPU")
    hottest_thread_percent: Percent | None = Field(
        description="that thread's CPU, % of one core: a saturated thread shows here even when "
        "the host's average is low"
    )
    busy_poll_percent: Percent | None = Field(
        None, description="a load process: the part of cpu_percent it spent polling without "
        "sleeping, for replies (benchmark.builtin.busy_poll_usec) or, in an open loop, for its "
        "next point, % of one core; the client-bound verdicts leave it out; null: not a load "
        "process, or not counted"
    )
    busy_threads: NonNegativeInt | None = Field(
        None, description="its threads that used at least 5 % of a core in the interval: the "
        "cores a multi-threaded server can keep busy at once; null in results written before "
        "coord recorded it"
    )
    ports: list[int] = Field(
        default_factory=list, description="a server process: the target servers' ports it "
        "listens on, which tell two servers on one host apart; empty for a load process (and "
        "in results written before coord recorded it)"
    )


class InterfaceRecord(MetricsModel):
    """One network interface in the interval (increases of /proc/net/dev)."""

    bytes_received: NonNegativeInt = Field(description="bytes received")
    bytes_sent: NonNegativeInt = Field(description="bytes sent")
    packets_received: NonNegativeInt = Field(description="packets received")
    packets_sent: NonNegativeInt = Field(description="packets sent")


class ThrottlingRecord(MetricsModel):
    """The CPU quota of the host's cgroup and its throttling in the interval (cpu.stat)."""

    cgroup: str = Field(description="the cgroup with the quota (the closest to the agent)")
    version: Literal["v1", "v2"] = Field(description="cgroup version")
    quota_cores: NonNegativeFloat = Field(description="the quota, in cores")
    periods: NonNegativeInt = Field(description="enforcement periods elapsed")
    throttled_periods: NonNegativeInt = Field(description="periods in which it was throttled")
    throttled_usec: NonNegativeInt = Field(description="time its processes were held back, µs")


class HostInterval(MetricsModel):
    """One interval of one host."""

    index: int = Field(description="the load's interval index (-1: before T0)")
    phase: Literal["before", "warmup", "measure", "after"] = Field(
        description="before T0, the load's warm-up or measure, or after its planned end"
    )
    start_ms: float = Field(description="start, ms after T0 (the agent's clock)")
    duration_ms: NonNegativeFloat = Field(
        description="between the two snapshots, ms (the first and the last interval can be "
        "shorter or longer than the grid's)"
    )
    cpu: CpuRecord | None = Field(description="all cores")
    cores: list[CpuRecord] = Field(description="each core, in /proc/stat order")
    load_average_1m: NonNegativeFloat | None = Field(description="1-minute load average, at end")
    memory_used_bytes: NonNegativeInt | None = Field(description="total - available, at end")
    memory_available_bytes: NonNegativeInt | None = Field(description="MemAvailable, at end")
    interfaces: dict[str, InterfaceRecord] = Field(description="per network interface")
    tcp_retransmits: NonNegativeInt | None = Field(description="TCP segments retransmitted")
    listen_drops: NonNegativeInt | None = Field(description="TCP ListenDrops")
    listen_overflows: NonNegativeInt | None = Field(description="TCP ListenOverflows")
    context_switches: NonNegativeInt | None = Field(description="context switches, host")
    throttling: ThrottlingRecord | None = Field(
        description="the cgroup quota's throttling; null when no quota applies"
    )
    load_processes: list[ProcessRecord] = Field(
        description="the agent's load processes (present at both ends of the interval)"
    )
    server_processes: list[ProcessRecord] = Field(
        description="the target server's processes on this host (found by listening port)"
    )
    missing: dict[str, str] = Field(description="figure -> why it is null or incomplete")

    def hottest_load_process(self) -> ProcessRecord | None:
        """The load process that used the most CPU, if any was watched."""
        return max(self.load_processes, key=lambda p: p.cpu_percent, default=None)


class RedisInfoRecord(MetricsModel):
    """Redis INFO at the start or the end of the load."""

    moment: Literal["start", "end"] = Field(description="at T0 or at the planned end")
    taken_ms: float = Field(description="when, ms after T0 (the agent's clock)")
    sections: dict[str, dict[str, str]] = Field(
        description="section -> field -> value, as Redis wrote them (server, clients, cpu, "
        "stats, memory, commandstats)"
    )
    problem: str | None = Field(description="why it could not be taken (then no sections)")


class HostMetrics(MetricsModel):
    """One host's metrics in one repetition."""

    host: str = Field(description="host name, as in the inventory")
    roles: list[Literal["client", "server"]] = Field(
        description="client: runs load; server: runs the target server"
    )
    interval_ms: NonNegativeFloat = Field(description="the grid's interval, ms")
    intervals: list[HostInterval] = Field(description="every interval sampled, in order")
    redis_info: list[RedisInfoRecord] = Field(
        description="server host: Redis INFO at the start and the end of the load"
    )
    missing: dict[str, str] = Field(
        description="what was not sampled at all, and why (\"all\": the agent could not sample)"
    )

    def interval(self, index: int) -> HostInterval | None:
        """The interval of the load's ``index``, if sampled."""
        return next((item for item in self.intervals if item.index == index), None)


def _offset_ms(time_ns: int, origin_ns: int) -> float:
    return (time_ns - origin_ns) / 1e6


def _interval_record(interval: MetricsInterval, origin_ns: int) -> HostInterval:
    data: dict[str, Any] = messages.encode(interval)
    for name in ("start_ns", "end_ns"):
        del data[name]
    for share, encoded in ((interval.cpu, data["cpu"]), *zip(interval.cores, data["cores"],
                                                              strict=True)):
        if share is not None:
            encoded["busy"] = share.busy
    data["start_ms"] = _offset_ms(interval.start_ns, origin_ns)
    data["duration_ms"] = (interval.end_ns - interval.start_ns) / 1e6
    return HostInterval.model_validate(data)


def _info_record(info: RedisInfo, origin_ns: int) -> RedisInfoRecord:
    return RedisInfoRecord.model_validate({
        "moment": info.moment, "taken_ms": _offset_ms(info.taken_ns, origin_ns),
        "sections": {name: dict(fields) for name, fields in info.sections.items()},
        "problem": info.problem,
    })  # fmt: skip


def host_metrics(host: str, roles: Sequence[str], report: MetricsReport) -> HostMetrics:
    """A host's report as stored; times relative to its T0 (to its first snapshot if the agent
    was never told T0)."""
    origin = report.t0_ns
    if origin is None:
        origin = report.intervals[0].start_ns if report.intervals else 0
    return HostMetrics.model_validate({
        "host": host, "roles": list(roles), "interval_ms": report.interval_ns / 1e6,
        "intervals": [_interval_record(item, origin) for item in report.intervals],
        "redis_info": [_info_record(info, origin) for info in report.redis_info],
        "missing": dict(report.missing),
    })  # fmt: skip


def unsampled(host: str, roles: Sequence[str], interval_ns: int, reason: str) -> HostMetrics:
    """A host whose agent could not sample: no intervals, and why."""
    return HostMetrics.model_validate({
        "host": host, "roles": list(roles), "interval_ms": interval_ns / 1e6, "intervals": [],
        "redis_info": [], "missing": {"all": reason},
    })  # fmt: skip
