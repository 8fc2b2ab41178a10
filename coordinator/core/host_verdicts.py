"""Host verdicts: client-bound, server-bound, network-bound, from the hosts' metric series.
Pure: no I/O.

The host metrics arrive as :class:`HostSeries`, a minimal model of what the agents' samplers
measure, one value per interval of the run's grid; a sampler's own record is adapted to it.
A metric that is missing makes its verdict undecided, never clear.

An open loop's own report is client evidence too: a client whose schedule fell behind (its
intervals' ``loop_behind``: requests late or unsent although their connection was free)
could not send at the rate asked, unless the server was saturated in those intervals (then
the rate was beyond the server, which server-bound says). Requests that queued behind an
unanswered one on their connection waited for the server: a stall, not the client.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Literal

from coordinator.core import marks
from coordinator.core.figures import AgentRepetition, IntervalRecord, Repetition
from coordinator.core.verdict_records import (
    Evidence,
    Finding,
    Thresholds,
    Verdict,
    combined_state,
    details,
    reasons,
    verdict_of,
)

NO_METRICS = "no metrics: the hosts' metric series were not sampled"
"""Why the host verdicts are undecided when a repetition comes without host series."""


@dataclass(frozen=True)
class HostSeries:
    """One host's metrics over a repetition, one value per interval of ``interval_indices``
    (the run's interval grid, counted from T0 like the load's intervals). ``None`` in a series
    is an interval without a sample; an empty series or mapping is a metric not measured at
    all. Both make the verdicts that need the metric undecided.

    CPU figures are percentages: ``cpu_total_percent`` of all the host's cores (0..100), the
    per-process and per-thread ones of one core (a process may exceed 100).
    """

    host: str
    role: Literal["client", "server"]
    interval_indices: Sequence[int]
    cpu_total_percent: Sequence[float | None] = ()
    """Host CPU busy (user + system + softirq + steal ...), % of all cores."""
    load_process_cpu: Mapping[str, Sequence[float | None]] = field(default_factory=dict)
    """Client hosts: per load process (named as the user knows it, e.g. "2"), % of one core."""
    hottest_thread_cpu: Sequence[float | None] = ()
    """Client hosts: the busiest thread of any load process in the interval, % of one core."""
    throttled_periods: Sequence[int | None] | None = None
    """cgroup CPU periods throttled in the interval; ``None``: the host has no CPU quota."""
    retransmits: Sequence[int | None] = ()
    """TCP segments retransmitted in the interval."""
    interface_bytes: Mapping[str, Sequence[int | None]] = field(default_factory=dict)
    """Per interface: bytes in its busier direction (max of sent, received) in the interval."""
    link_speed_mbps: Mapping[str, int | None] = field(default_factory=dict)
    """Per interface: link speed, Mbit/s; ``None`` or absent: unknown (utilisation skipped)."""
    servers: Sequence[ServerSeries] | None = None
    """Server hosts: each target server on the host, judged on its own (``None`` on a client
    host)."""


@dataclass(frozen=True)
class ServerSeries:
    """One target server on a server host, as server-bound judges it: its processes' CPU
    against the CPU it can use. A host running two targets has one each, told apart by the
    ports their processes listen on."""

    host: str
    target: str | None
    """The target's name when the host runs several (``None``: the host runs one)."""
    interval_indices: Sequence[int]
    process_cpu: Sequence[float | None]
    """Its processes' CPU, % of one core, per interval (``None``: none was sampled)."""
    cpu_limit_cores: float | None
    """The CPU it can use, in cores: one per server thread doing work (1 for Redis, its busy
    workers for a pre-fork server, its busy threads for a multi-threaded one), at most the
    host's cores, or its quota if smaller; ``None``: unknown, so server-bound is undecided."""
    quota_throttled_percent: Sequence[float | None] | None = None
    """When its limit is the host cgroup's CPU quota: the share of the interval's enforcement
    periods in which the cgroup ran out of it, %; ``None``: no quota is the limit. The quota
    is shared with what else runs in the cgroup (coord's agent, sshd, another target): a
    cgroup out of its quota in every period has a server at its CPU limit even when its
    processes themselves used less than the quota."""
    hottest_thread_cpu: Sequence[float | None] = ()
    """Its busiest thread, % of one core, per interval: at its core's limit, a serial path of
    the server (Redis's main thread, even with io-threads) is the bottleneck."""

    @property
    def name(self) -> str:
        """How the verdicts call it."""
        if self.target is None:
            return f"the server on {self.host}"
        return f"the server {self.target} on {self.host}"

    @property
    def processes(self) -> str:
        """How its evidence calls its processes."""
        return "the server process" if self.target is None else f"{self.target}'s processes"

    @property
    def thread(self) -> str:
        """How its evidence calls its busiest thread."""
        return "the server's busiest thread" if self.target is None else (
            f"{self.target}'s busiest thread")


# --------------------------------------------------------------------------------------------
# One metric against one threshold


Points = Sequence[tuple[int, float | None]]
"""(interval index, value) over a repetition's window."""


def saturation(host: str, metric: str, label: str, points: Points, threshold: float,
               share_percent: float, *, at_or_above: bool = False,
               unit: str = " %") -> Finding:
    """Flagged when ``points`` exceed ``threshold`` (or reach it, ``at_or_above``) in more than
    ``share_percent`` of the intervals; undecided when not flagged and a sample is missing."""
    if not points:
        return Finding("undecided", reason=f"{host}: no interval to judge {metric} over")

    def crosses(value: float) -> bool:
        return value >= threshold if at_or_above else value > threshold

    over = [(index, value) for index, value in points if value is not None and crosses(value)]
    if over and 100 * len(over) / len(points) > share_percent:
        worst = max(value for _, value in over)
        return Finding("flagged", Evidence(
            metric=metric, host=host, intervals=[index for index, _ in over], value=worst,
            threshold=threshold,
            detail=f"{label} at {worst:,.0f}{unit} in {len(over)} of {len(points)} intervals"))
    missing = sum(1 for _, value in points if value is None)
    if missing:
        return Finding("undecided", reason=f"{host}: no {metric} sample in {missing} of "
                                           f"{len(points)} intervals")
    return Finding("clear")


def window_points(indices: Sequence[int], values: Sequence[float | None],
                  window: Sequence[int]) -> list[tuple[int, float | None]]:
    """The values of the window's intervals (``None`` where none was sampled)."""
    by_index = dict(zip(indices, values, strict=False))
    return [(index, by_index.get(index)) for index in window]


def window_indices(repetition: Repetition) -> list[int]:
    """The interval indices of the repetition's common window."""
    window = repetition.window
    if window.first is None or window.last is None:
        return []
    excluded = set(window.excluded)
    return [i for i in range(window.first, window.last + 1) if i not in excluded]


# --------------------------------------------------------------------------------------------
# The verdicts


def client_findings(series: HostSeries, window: Sequence[int],
                    thresholds: Thresholds) -> list[Finding]:
    """Every CPU metric of a client host against its threshold."""
    share = thresholds.saturated_intervals_percent
    host = series.host

    def points(values: Sequence[float | None]) -> Points:
        return window_points(series.interval_indices, values, window)

    findings = [saturation(host, "cpu_total_percent", "host CPU", points(series.cpu_total_percent),
                           thresholds.client_cpu_percent, share)]
    if not series.load_process_cpu:
        findings.append(Finding("undecided", reason=f"{host}: no load process CPU measured"))
    for name, values in sorted(series.load_process_cpu.items()):
        findings.append(saturation(host, f"load_process_cpu_percent[{name}]",
                                   f"load process {name}", points(values),
                                   thresholds.process_cpu_percent, share, unit=" % of a core"))
    findings.append(saturation(host, "hottest_thread_cpu_percent", "its hottest load thread",
                               points(series.hottest_thread_cpu),
                               thresholds.process_cpu_percent, share, unit=" % of a core"))
    if series.throttled_periods is not None:
        throttled = points([None if v is None else float(v) for v in series.throttled_periods])
        findings.append(saturation(host, "cgroup_throttled_periods", "cgroup CPU throttling",
                                   throttled, 0, 0, unit=" periods"))
    return findings


def schedule_finding(agent: AgentRepetition, window: Sequence[int], thresholds: Thresholds,
                     server_saturated: Collection[int]) -> Finding | None:
    """An open loop itself behind its schedule (``loop_behind``; an older document's
    ``behind_schedule``) in more than ``saturated_intervals_percent`` of the window's
    intervals, leaving out those in which a server was saturated (``None``: a closed loop,
    nothing to judge)."""
    measured = {record.index: record for record in agent.intervals
                if record.in_window and record.behind_schedule is not None}
    if not measured:
        return None
    behind = [measured[index] for index in window
              if index in measured and measured[index].load_fell_behind
              and index not in server_saturated]
    share = 100 * len(behind) / len(window) if window else 0.0
    if not behind or share <= thresholds.saturated_intervals_percent:
        return Finding("clear")
    shown = "; ".join(
        f"interval {r.index}: {r.not_sent or 0:,} not sent, {r.late or 0:,} of {r.sent or 0:,} "
        f"late{_waiting(r)}, up to {(r.lateness_max_usec or 0) / 1000:,.1f} ms late"
        for r in behind[:3])
    more = f"; {len(behind) - 3} more" if len(behind) > 3 else ""
    return Finding("flagged", Evidence(
        metric="behind_schedule", host=agent.host, intervals=[r.index for r in behind],
        value=share, threshold=thresholds.saturated_intervals_percent,
        detail=f"its open-loop schedule behind in {len(behind)} of {len(window)} intervals "
               f"({shown}{more}): it could not send at benchmark.builtin.rate"))


def _waiting(record: IntervalRecord) -> str:
    """What of an interval's late and unsent requests waited for the server, if any."""
    waiting = (record.late_waiting or 0) + (record.not_sent_waiting or 0)
    return f" ({waiting:,} of them waiting on the server)" if waiting else ""


def client_bound(series: HostSeries | None, host: str, window: Sequence[int], repetition: int,
                 thresholds: Thresholds, schedule: Finding | None = None) -> Verdict:
    """Client-bound on one client host: total CPU, a load process, its hottest thread, cgroup
    throttling, and ``schedule``, its open loop's (see :func:`schedule_finding`)."""
    kind = marks.CLIENT_BOUND
    own = [] if schedule is None else [schedule]
    if series is None and combined_state(own) != "flagged":
        return verdict_of(kind, "undecided", repetition, [host],
                        f"undecided: no metrics from {host}")
    missing = [Finding("undecided", reason=f"no metrics from {host}")]
    findings = [*own, *(missing if series is None
                        else client_findings(series, window, thresholds))]
    state = combined_state(findings)
    if state == "flagged":
        summary = (f"{host} was the bottleneck: {details(findings)}; add client machines or "
                   f"load processes (the figures measure the client, not the server)")
    elif state == "undecided":
        summary = f"undecided whether {host} was the bottleneck: {reasons(findings)}"
    else:
        summary = f"{host} had headroom: no CPU metric over its threshold"
    return verdict_of(kind, state, repetition, [host], summary, findings)


def server_saturated_intervals(servers: Sequence[ServerSeries], window: Sequence[int],
                               thresholds: Thresholds) -> set[int]:
    """The window's intervals in which a server was at or above ``server_cpu_percent`` of the
    CPU it can use (servers whose use or limit is unknown count for none)."""
    saturated: set[int] = set()
    for series in servers:
        limit = series.cpu_limit_cores
        if not series.process_cpu or limit is None or limit <= 0:
            continue
        saturated.update(
            index for index, value in window_points(series.interval_indices,
                                                    series.process_cpu, window)
            if value is not None and value / limit >= thresholds.server_cpu_percent)
        saturated.update(
            index for index, value in window_points(series.interval_indices,
                                                    series.quota_throttled_percent or (),
                                                    window)
            if value is not None and value >= thresholds.server_cpu_percent)
        saturated.update(
            index for index, value in window_points(series.interval_indices,
                                                    series.hottest_thread_cpu, window)
            if value is not None and value >= thresholds.server_cpu_percent)
    return saturated


def quota_exhausted(series: ServerSeries, window: Sequence[int],
                    thresholds: Thresholds) -> Finding | None:
    """The server's cgroup out of its CPU quota in at least ``server_cpu_percent`` of the
    periods of enough intervals (``None``: no quota is the server's limit)."""
    throttled = series.quota_throttled_percent
    if not throttled:
        return None
    return saturation(series.host, "server_cgroup_throttled_percent_of_periods",
                      f"its cgroup out of its {series.cpu_limit_cores:g}-core quota",
                      window_points(series.interval_indices, throttled, window),
                      thresholds.server_cpu_percent, thresholds.saturated_intervals_percent,
                      at_or_above=True, unit=" % of the periods")


def process_share(series: ServerSeries, window: Sequence[int], limit: float) -> str:
    """What the server's processes themselves had of its quota, over the window (median)."""
    used = [value / limit for _, value in window_points(
        series.interval_indices, series.process_cpu, window) if value is not None]
    if not used:
        return ""
    return (f"; {series.processes} used {median(used):,.0f} % of the quota (median), the "
            f"rest went to other processes of its cgroup, coord's agent among them")


def server_bound(series: ServerSeries | None, host: str, window: Sequence[int],
                 repetition: int, clients: Sequence[Verdict],
                 thresholds: Thresholds) -> Verdict:
    """Server-bound on one server of a server host: its processes at or near the CPU it can
    use while every client had headroom (good news)."""
    kind = marks.SERVER_BOUND
    saturated = [v.hosts[0] for v in clients if v.state == "flagged" and v.hosts]
    which = "" if series is None or series.target is None else f" ({series.name})"
    if saturated:
        return verdict_of(kind, "clear", repetition, [host],
                        f"not server-bound{which}: {', '.join(saturated)} ran out of CPU first")
    if series is None:
        return verdict_of(kind, "undecided", repetition, [host],
                        f"undecided: no metrics from {host}")
    server = series.name
    if not series.process_cpu:
        return verdict_of(kind, "undecided", repetition, [host],
                        f"undecided: the CPU of {server} was not measured")
    limit = series.cpu_limit_cores
    if limit is None or limit <= 0:
        return verdict_of(kind, "undecided", repetition, [host],
                        f"undecided: the CPU {server} can use is unknown")
    usable = [(i, None if v is None else v / limit)
              for i, v in window_points(series.interval_indices, series.process_cpu, window)]
    finding = saturation(host, "server_process_cpu_percent_of_usable", series.processes,
                         usable, thresholds.server_cpu_percent,
                         thresholds.saturated_intervals_percent, at_or_above=True,
                         unit=f" % of its {limit:g} core(s)")
    share = ""
    quota = quota_exhausted(series, window, thresholds)
    if finding.state != "flagged" and quota is not None and quota.state == "flagged":
        finding, share = quota, process_share(series, window, limit)
    thread = saturation(host, "server_hottest_thread_cpu_percent", series.thread,
                        window_points(series.interval_indices, series.hottest_thread_cpu,
                                      window),
                        thresholds.server_cpu_percent, thresholds.saturated_intervals_percent,
                        at_or_above=True, unit=" % of a core")
    if finding.state != "flagged" and thread.state == "flagged":
        finding = thread
    undecided_clients = [v for v in clients if v.state != "clear"]
    if finding.state == "flagged" and undecided_clients:
        return verdict_of(kind, "undecided", repetition, [host],
                        f"undecided: {server} was busy ({details([finding])}) but whether "
                        f"every client had headroom is not known", [finding])
    if finding.state == "flagged":
        return verdict_of(kind, "flagged", repetition, [host],
                        f"good news: {server} was the bottleneck, as a benchmark of it "
                        f"should be: {details([finding])}{share}; every client had headroom",
                        [finding])
    if finding.state == "undecided":
        return verdict_of(kind, "undecided", repetition, [host],
                          f"undecided{which}: {finding.reason}")
    return verdict_of(kind, "clear", repetition, [host],
                    f"{server} had CPU to spare: the load did not reach its limit")


def network_bound(series: HostSeries, window: Sequence[int], repetition: int,
                  interval_s: float, thresholds: Thresholds) -> Verdict:
    """Network-bound on one host: an interface near its link speed, or TCP retransmits."""
    host, findings = series.host, []
    share = thresholds.saturated_intervals_percent
    if not series.interface_bytes:
        findings.append(Finding("undecided", reason=f"{host}: no interface counters"))
    for interface, values in sorted(series.interface_bytes.items()):
        speed = series.link_speed_mbps.get(interface)
        if speed is None or speed <= 0:
            findings.append(Finding("undecided", reason=f"{host} {interface}: link speed "
                                                        f"unknown, utilisation not judged"))
            continue
        used = [(i, None if v is None else v * 8 * 100 / (interval_s * speed * 1e6))
                for i, v in window_points(series.interval_indices,
                                          [None if v is None else float(v) for v in values],
                                          window)]
        findings.append(saturation(host, f"link_percent[{interface}]", f"{interface}", used,
                                   thresholds.link_percent, share,
                                   unit=f" % of {speed} Mbit/s"))
    retransmitted = window_points(series.interval_indices,
                                  [None if v is None else float(v) for v in series.retransmits],
                                  window)
    missing = [i for i, v in retransmitted if v is None]
    total = sum(v for _, v in retransmitted if v is not None)
    if retransmitted and total > thresholds.retransmits:
        findings.append(Finding("flagged", Evidence(
            metric="tcp_retransmits", host=host,
            intervals=[i for i, v in retransmitted if v], value=total,
            threshold=thresholds.retransmits,
            detail=f"{total:,.0f} TCP retransmits in the window")))
    elif missing or not retransmitted:
        findings.append(Finding("undecided", reason=f"{host}: TCP retransmits not measured in "
                                                    f"{len(missing) or len(window)} interval(s)"))
    state = combined_state(findings)
    if state == "flagged":
        summary = (f"the network of {host} was a limit: {details(findings)}; use a faster or "
                   f"quieter network, or fewer bytes per request")
    elif state == "undecided":
        summary = f"undecided: {reasons(findings)}"
    else:
        summary = f"{host}'s network had headroom and no retransmits"
    return verdict_of(marks.NETWORK_BOUND, state, repetition, [host], summary, findings)


def host_verdicts(repetition: Repetition, hosts: Sequence[HostSeries] | None,
                  server_hosts: Sequence[str], interval_s: float,
                  thresholds: Thresholds) -> list[Verdict]:
    """Client-bound per client, server-bound per server host, network-bound per host; each
    undecided ("no metrics") when ``hosts`` is None."""
    index = repetition.index
    if hosts is None:
        return [verdict_of(kind, "undecided", index, [], f"undecided: {NO_METRICS}")
                for kind in (marks.CLIENT_BOUND, marks.SERVER_BOUND, marks.NETWORK_BOUND)]
    window = window_indices(repetition)
    by_host = {series.host: series for series in hosts}
    servers_of = {name: by_host[name].servers or () if name in by_host else None
                  for name in server_hosts}
    saturated = server_saturated_intervals([server for on_host in servers_of.values()
                                            for server in on_host or ()], window, thresholds)
    clients = [client_bound(by_host.get(agent.host), agent.host, window, index, thresholds,
                            schedule_finding(agent, window, thresholds, saturated))
               for agent in repetition.agents]
    servers: list[Verdict] = []
    for name, on_host in servers_of.items():
        judged: Sequence[ServerSeries | None] = on_host or [None]  # None: no metrics from it
        servers.extend(server_bound(server, name, window, index, clients, thresholds)
                       for server in judged)
    network = [network_bound(series, window, index, interval_s, thresholds)
               for series in sorted(hosts, key=lambda s: s.host)]
    return [*clients, *servers, *network]
