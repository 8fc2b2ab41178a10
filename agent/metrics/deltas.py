"""Two snapshots of cumulative counters into one interval's figures. Pure: no I/O.

A snapshot (:class:`HostSnapshot`) holds what could be read at one instant; a part that could
not be read is None with its reason in ``problems``. An interval's figure needs its part in both
snapshots: otherwise it is None and named in the interval's ``missing``. A process present in
only one snapshot (started or exited in between) is left out of the interval and said so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.metrics.cgroup import QuotaCgroup, ThrottleCounters
from agent.metrics.model import (
    BUSY_THREAD_PERCENT,
    CpuShare,
    InterfaceTraffic,
    MetricsInterval,
    ProcessCpu,
    Throttling,
)
from agent.metrics.procfs import (
    CpuTicks,
    Interface,
    Memory,
    ProcessTimes,
    SystemStat,
    TcpCounters,
)


@dataclass(frozen=True)
class HostSnapshot:
    """What was read at ``time_ns`` (the agent's ``time.time_ns()``)."""

    time_ns: int
    stat: SystemStat | None = None
    interfaces: Mapping[str, Interface] | None = None
    tcp: TcpCounters | None = None
    memory: Memory | None = None
    load_average_1m: float | None = None
    throttle: ThrottleCounters | None = None
    load_processes: Mapping[int, ProcessTimes] = field(default_factory=dict)
    server_processes: Mapping[int, ProcessTimes] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)


def cpu_share(before: CpuTicks, after: CpuTicks) -> CpuShare:
    """Percent of the ticks elapsed between the two readings (0 everywhere if none did)."""
    elapsed = after.total - before.total

    def share(name: str) -> float:
        if elapsed <= 0:
            return 0.0
        used: int = getattr(after, name) - getattr(before, name)
        return max(0.0, 100.0 * used / elapsed)

    user = share("user") + share("nice")
    return CpuShare(user=user, system=share("system"), irq=share("irq"),
                    softirq=share("softirq"), steal=share("steal"), iowait=share("iowait"),
                    idle=share("idle"))


def process_cpu(before: ProcessTimes, after: ProcessTimes, seconds: float) -> ProcessCpu:
    """A process's CPU over the interval, % of one core, its hottest thread's, and how many of
    its threads did work (:data:`BUSY_THREAD_PERCENT`)."""

    def percent(used_ns: int) -> float:
        return max(0.0, 100.0 * used_ns / 1e9 / seconds) if seconds > 0 else 0.0

    hottest, hottest_ns, busy = None, -1, 0
    for tid, cpu_ns in after.threads.items():
        used = cpu_ns - before.threads.get(tid, 0)
        if used > hottest_ns:
            hottest, hottest_ns = tid, used
        if percent(used) >= BUSY_THREAD_PERCENT:
            busy += 1
    spun = None
    if before.spin_ns is not None and after.spin_ns is not None:
        spun = percent(after.spin_ns - before.spin_ns)
    return ProcessCpu(
        pid=after.pid, name=after.name, cpu_percent=percent(after.cpu_ns - before.cpu_ns),
        threads=len(after.threads), hottest_thread=hottest,
        hottest_thread_percent=percent(hottest_ns) if hottest is not None else None,
        busy_poll_percent=spun, ports=after.ports, busy_threads=busy,
    )  # fmt: skip


def _processes(kind: str, before: Mapping[int, ProcessTimes], after: Mapping[int, ProcessTimes],
               seconds: float, missing: dict[str, str]) -> tuple[ProcessCpu, ...]:
    gone = sorted(set(before) - set(after))
    new = sorted(set(after) - set(before))
    if gone:
        missing[f"{kind}.exited"] = f"process(es) {', '.join(map(str, gone))} exited"
    if new:
        missing[f"{kind}.started"] = f"process(es) {', '.join(map(str, new))} started"
    return tuple(process_cpu(before[pid], after[pid], seconds)
                 for pid in sorted(set(before) & set(after)))


def _counter(name: str, before: int | None, after: int | None) -> int | None:
    if before is None or after is None:
        return None
    return max(0, after - before)


def _tcp(before: TcpCounters | None, after: TcpCounters | None, name: str) -> int | None:
    if before is None or after is None:
        return None
    return _counter(name, getattr(before, name), getattr(after, name))


def _traffic(before: Mapping[str, Interface],
             after: Mapping[str, Interface]) -> dict[str, InterfaceTraffic]:
    traffic = {}
    for name in sorted(set(before) & set(after)):
        b, a = before[name], after[name]
        traffic[name] = InterfaceTraffic(
            bytes_received=max(0, a.bytes_received - b.bytes_received),
            bytes_sent=max(0, a.bytes_sent - b.bytes_sent),
            packets_received=max(0, a.packets_received - b.packets_received),
            packets_sent=max(0, a.packets_sent - b.packets_sent),
        )
    return traffic


def _throttling(quota: QuotaCgroup, before: ThrottleCounters,
                after: ThrottleCounters) -> Throttling:
    return Throttling(
        cgroup=str(quota.path), version=quota.version, quota_cores=quota.quota_cores,
        periods=max(0, after.periods - before.periods),
        throttled_periods=max(0, after.throttled_periods - before.throttled_periods),
        throttled_usec=max(0, after.throttled_usec - before.throttled_usec),
    )  # fmt: skip


def interval_between(before: HostSnapshot, after: HostSnapshot, *, index: int, phase: str,
                     quota: QuotaCgroup | None) -> MetricsInterval:
    """One interval from its two boundary snapshots."""
    missing: dict[str, str] = {}

    def reason(part: str) -> str:
        return after.problems.get(part) or before.problems.get(part) or "not read"

    seconds = (after.time_ns - before.time_ns) / 1e9
    cpu, switches = None, None
    cores: tuple[CpuShare, ...] = ()
    if before.stat is not None and after.stat is not None:
        cpu = cpu_share(before.stat.total, after.stat.total)
        cores = tuple(cpu_share(b, a) for b, a in zip(before.stat.cores, after.stat.cores,
                                                      strict=False))
        switches = _counter("ctxt", before.stat.context_switches, after.stat.context_switches)
    else:
        missing["cpu"] = missing["context_switches"] = reason("stat")
    interfaces: dict[str, InterfaceTraffic] = {}
    if before.interfaces is not None and after.interfaces is not None:
        interfaces = _traffic(before.interfaces, after.interfaces)
    else:
        missing["interfaces"] = reason("interfaces")
    old_tcp, new_tcp = before.tcp, after.tcp
    if old_tcp is None or new_tcp is None:
        missing["tcp"] = reason("tcp")
    if after.memory is None:
        missing["memory"] = reason("memory")
    if after.load_average_1m is None:
        missing["load_average"] = reason("loadavg")
    throttling = None
    if quota is not None:
        if before.throttle is not None and after.throttle is not None:
            throttling = _throttling(quota, before.throttle, after.throttle)
        else:
            missing["throttling"] = reason("throttle")
    for part, text in after.problems.items():
        if part.startswith(("load_processes", "server_processes")):
            missing[part] = text
    return MetricsInterval(
        index=index, phase=phase, start_ns=before.time_ns, end_ns=after.time_ns,
        cpu=cpu, cores=cores, load_average_1m=after.load_average_1m,
        memory_used_bytes=(after.memory.total_bytes - after.memory.available_bytes
                           if after.memory is not None else None),
        memory_available_bytes=after.memory.available_bytes if after.memory else None,
        interfaces=interfaces,
        tcp_retransmits=_tcp(old_tcp, new_tcp, "retransmits"),
        listen_drops=_tcp(old_tcp, new_tcp, "listen_drops"),
        listen_overflows=_tcp(old_tcp, new_tcp, "listen_overflows"),
        context_switches=switches, throttling=throttling,
        load_processes=_processes("load_processes", before.load_processes,
                                  after.load_processes, seconds, missing),
        server_processes=_processes("server_processes", before.server_processes,
                                    after.server_processes, seconds, missing),
        missing=missing,
    )  # fmt: skip
