"""The hosts' stored metrics (:class:`~coordinator.core.metrics.HostMetrics`) as the verdicts'
input (:class:`~coordinator.core.host_verdicts.HostSeries`). Pure: no I/O.

Choices, each so that a verdict is never decided on a figure that was not measured:

- **role**: a host that runs load is judged as a client (its load processes, its throttling);
  if it also runs the target server, its server process's CPU is kept as well, so the same
  host is judged server-bound too.
- **load processes** are named as the user counts them: ``1``, ``2``... in pid order (the
  order the agent spawned them), with the command name and pid beside (``2 (python, pid
  2319)``). Only processes seen in the window count: one that ran only in the warm-up is not
  missing from the window. An interval where a process was not sampled is None.
- **throttled periods**: None when the host has no CPU quota; an empty series (not measured,
  so client-bound is undecided) when a quota may exist but its counters could not be read.
- **busy-polling** (``benchmark.builtin.busy_poll_usec``) is left out of a client's CPU: a load
  process's CPU less the CPU it spent polling for replies (``busy_poll_percent``, counted by
  the process and read with its CPU clock), its hottest thread's too when that thread is the
  polling one (the main thread), and the host's busy share less every load process's polling
  over the host's cores. A host whose cores were not read keeps its busy share as measured.
- **interfaces**: bytes in the busier direction; the loopback is left out, as it has no link
  to saturate (and no link speed: it would make network-bound undecided for ever).
- **server CPU limit**: one core per server thread doing the work, at most the host's cores:
  Redis executes commands on one thread, so one core is the most it can use, whatever the
  host has (more with io-threads, whose threads do work too); a multi-threaded server
  (Dragonfly, memcached) as many as its busy threads; a pre-fork server (Gunicorn's workers,
  each running one request at a time) as many as it has busy workers, and its master, which
  only watches them, does no work (a process under :data:`BUSY_SERVER_PROCESS_PERCENT` of a
  core over the window is not counted; a thread under the agent's ``BUSY_THREAD_PERCENT`` in
  an interval either). Results written before the agents counted busy threads allow one core
  per process. A CPU quota below that is the limit instead. The quota is the server host
  agent's cgroup's (the lab puts sshd, hence the agent, and redis-server in one cgroup). A
  quota whose counters could not be read leaves the limit unknown: the server may be held to
  less than a core.
- **the server's hottest thread** is kept too: a thread at its core's limit is a serial path
  at its limit (Redis's main thread, which executes every command even with io-threads), so
  the server is saturated whatever its other threads do.
- **quota exhausted**: the share of each interval's enforcement periods in which that cgroup
  was throttled, kept for a server whose limit is the quota: the cgroup's other processes
  (the agent, sshd) use some of it, so a server at its limit may show less than the quota.
- **several targets on one host** (``benchmark.targets``): each is judged on its own
  processes, those listening on its port, against its own limit; summed, a saturated Redis
  beside an idle model server read as a host with CPU to spare. The quota, when one is the
  limit, is the host's and shared: each target whose limit it is sees the same throttling.
  Results written before the agents recorded the ports keep one server per host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import median

from coordinator.core.host_verdicts import HostSeries, ServerSeries
from coordinator.core.metrics import HostInterval, HostMetrics, ProcessRecord
from coordinator.core.platform import PlatformRecord

LOOPBACK = "lo"
"""The loopback interface: never a network limit."""

SINGLE_THREAD_CORES = 1.0
"""The CPU a server that executes commands on one thread (Redis) can use, in cores."""

BUSY_SERVER_PROCESS_PERCENT = 5.0
"""A server process using less than this over the window (% of one core, its median) does none
of the work: a pre-fork server's master, which only watches its workers."""


def host_series(metrics: HostMetrics, window: Sequence[int], platform: PlatformRecord | None,
                targets: Mapping[int, str] | None = None) -> HostSeries:
    """One host's series over its intervals, for the verdicts on ``window`` (the
    repetition's common window's interval indices); ``targets``: the target servers on the
    host, port -> name."""
    intervals = [item for item in metrics.intervals if item.index >= 0]
    indices = [item.index for item in intervals]
    in_window = [item for item in intervals if item.index in set(window)]
    client, server = "client" in metrics.roles, "server" in metrics.roles
    throttled = throttled_periods(metrics, intervals)
    return HostSeries(
        host=metrics.host,
        role="client" if client or not server else "server",
        interval_indices=indices,
        cpu_total_percent=[host_busy(item) for item in intervals],
        load_process_cpu=load_process_cpu(intervals, in_window) if client else {},
        hottest_thread_cpu=[hottest_thread(item) for item in intervals] if client else [],
        throttled_periods=throttled,
        retransmits=[item.tcp_retransmits for item in intervals],
        interface_bytes=interface_bytes(intervals),
        link_speed_mbps=link_speeds(metrics.host, platform),
        servers=server_series(metrics, intervals, in_window, targets or {}) if server else None,
    )


def all_host_series(metrics: Sequence[HostMetrics], window: Sequence[int],
                    platform: PlatformRecord | None,
                    targets: Mapping[str, Mapping[int, str]] | None = None) -> list[HostSeries]:
    """Every sampled host's series; a host whose agent could not sample at all is left out,
    so its verdicts say "no metrics from" it. ``targets``: host -> its target servers (port
    -> name)."""
    return [host_series(item, window, platform, (targets or {}).get(item.host))
            for item in metrics if item.intervals]


def server_series(metrics: HostMetrics, intervals: Sequence[HostInterval],
                  in_window: Sequence[HostInterval],
                  targets: Mapping[int, str]) -> list[ServerSeries]:
    """The host's target servers, each over its own processes: one per target when the host
    runs several and its processes' ports were recorded, else one over every server
    process."""
    tagged = any(process.ports for item in intervals for process in item.server_processes)
    if len(targets) < 2 or not tagged:
        chosen: list[tuple[str | None, Sequence[HostInterval]]] = [(None, intervals)]
    else:
        chosen = [(name, [item.model_copy(update={"server_processes": [
                       process for process in item.server_processes if port in process.ports]})
                          for item in intervals])
                  for port, name in sorted(targets.items())]
    window = {item.index for item in in_window}
    found = []
    for target, own in chosen:
        parallel = server_parallelism([item for item in own if item.index in window] or own)
        found.append(ServerSeries(
            host=metrics.host, target=target, interval_indices=[item.index for item in own],
            process_cpu=[server_cpu(item) for item in own],
            hottest_thread_cpu=[server_hottest_thread(item) for item in own],
            cpu_limit_cores=server_cpu_limit(metrics, own, parallel),
            quota_throttled_percent=quota_throttled_percent(own, parallel),
        ))  # fmt: skip
    return found


def process_labels(intervals: Sequence[HostInterval]) -> dict[int, str]:
    """pid -> the name the user knows the load process by: its rank in pid order."""
    names = {p.pid: p.name for item in intervals for p in item.load_processes}
    return {pid: f"{rank} ({names[pid]}, pid {pid})"
            for rank, pid in enumerate(sorted(names), start=1)}


def load_process_cpu(intervals: Sequence[HostInterval],
                     in_window: Sequence[HostInterval]) -> dict[str, list[float | None]]:
    """Per load process seen in the window: its CPU, % of one core, per interval."""
    labels = process_labels(in_window)
    by_interval = [{p.pid: working(p.cpu_percent, p) for p in item.load_processes}
                   for item in intervals]
    return {label: [cpu.get(pid) for cpu in by_interval] for pid, label in labels.items()}


def working(percent: float, process: ProcessRecord) -> float:
    """A load process's CPU figure without the part it spent busy-polling."""
    return max(0.0, percent - (process.busy_poll_percent or 0.0))


def hottest_thread(interval: HostInterval) -> float | None:
    """The busiest thread of any load process, % of one core (None: none was sampled); the
    main thread, which is the one that busy-polls, without its polling."""
    threads = [working(p.hottest_thread_percent, p) if p.hottest_thread == p.pid
               else p.hottest_thread_percent
               for p in interval.load_processes if p.hottest_thread_percent is not None]
    return max(threads, default=None)


def host_busy(interval: HostInterval) -> float | None:
    """The host's busy share of all its cores, without its load processes' busy-polling."""
    if interval.cpu is None:
        return None
    polled = sum(p.busy_poll_percent or 0.0 for p in interval.load_processes)
    if not polled or not interval.cores:
        return interval.cpu.busy
    return max(0.0, interval.cpu.busy - polled / len(interval.cores))


def throttling_unread(metrics: HostMetrics, intervals: Sequence[HostInterval]) -> bool:
    """Whether a CPU quota's counters could not be read (the host, or an interval, says so)."""
    return "throttling" in metrics.missing or any("throttling" in item.missing
                                                  for item in intervals)


def throttled_periods(metrics: HostMetrics,
                      intervals: Sequence[HostInterval]) -> list[int | None] | None:
    """Throttled periods per interval; None: no quota; empty: a quota not measured."""
    if any(item.throttling is not None for item in intervals):
        return [None if item.throttling is None else item.throttling.throttled_periods
                for item in intervals]
    return [] if throttling_unread(metrics, intervals) else None


def interface_bytes(intervals: Sequence[HostInterval]) -> dict[str, list[int | None]]:
    """Per interface but the loopback: bytes in its busier direction, per interval."""
    names = sorted({name for item in intervals for name in item.interfaces} - {LOOPBACK})
    series: dict[str, list[int | None]] = {}
    for name in names:
        values: list[int | None] = []
        for item in intervals:
            traffic = item.interfaces.get(name)
            values.append(None if traffic is None
                          else max(traffic.bytes_sent, traffic.bytes_received))
        series[name] = values
    return series


def link_speeds(host: str, platform: PlatformRecord | None) -> Mapping[str, int | None]:
    """Per interface, its link speed from the run's platform description (empty: none)."""
    if platform is None:
        return {}
    record = next((item for item in platform.hosts if item.host == host), None)
    if record is None:
        return {}
    return {interface.name: interface.speed_mbps for interface in record.interfaces}


def server_cpu(interval: HostInterval) -> float | None:
    """The target server's processes' CPU, % of one core (None: none was sampled)."""
    if not interval.server_processes:
        return None
    return sum(p.cpu_percent for p in interval.server_processes)


def server_parallelism(intervals: Sequence[HostInterval]) -> float:
    """The cores the server's processes can keep busy at once: for each process doing work (its
    median CPU over ``intervals`` at least :data:`BUSY_SERVER_PROCESS_PERCENT` of a core), its
    threads doing work (their median; one when not recorded), at least one in all, at most the
    host's cores (when they were read)."""
    by_pid: dict[int, list[ProcessRecord]] = {}
    for item in intervals:
        for record in item.server_processes:
            by_pid.setdefault(record.pid, []).append(record)
    busy = 0
    for records in by_pid.values():
        if median(record.cpu_percent for record in records) < BUSY_SERVER_PROCESS_PERCENT:
            continue
        threads = [record.busy_threads for record in records if record.busy_threads is not None]
        busy += max(1, round(median(threads))) if threads else 1
    cores = max((len(item.cores) for item in intervals), default=0)
    parallel = max(1, busy)
    return float(min(parallel, cores) if cores else parallel)


def server_hottest_thread(interval: HostInterval) -> float | None:
    """The busiest thread of the server's processes, % of one core (None: none sampled)."""
    return max((p.hottest_thread_percent for p in interval.server_processes
                if p.hottest_thread_percent is not None), default=None)


def quota_throttled_percent(intervals: Sequence[HostInterval],
                            parallel: float) -> list[float | None] | None:
    """Per interval, the share of its enforcement periods in which the host's cgroup ran out
    of its CPU quota, %; None when no quota below the server's ``parallel`` cores is its
    limit."""
    quotas = [item.throttling.quota_cores for item in intervals if item.throttling is not None]
    if not quotas or min(quotas) >= parallel:
        return None
    return [100 * item.throttling.throttled_periods / item.throttling.periods
            if item.throttling is not None and item.throttling.periods else None
            for item in intervals]


def server_cpu_limit(metrics: HostMetrics, intervals: Sequence[HostInterval],
                     parallel: float) -> float | None:
    """The CPU the server can use, in cores: its ``parallel`` cores (:func:`server_parallelism`;
    one for Redis), or the host's CPU quota if smaller; None when a quota's counters could not
    be read."""
    quotas = [item.throttling.quota_cores for item in intervals if item.throttling is not None]
    if quotas:
        return min(parallel, *quotas)
    if throttling_unread(metrics, intervals):
        return None
    return parallel
