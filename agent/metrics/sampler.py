"""The sampler: a thread of the agent that snapshots the host at every interval boundary.

Started by ``start_metrics`` (at prepare) with a baseline snapshot, it waits for the load's T0
(``align``), then snapshots at ``t0 + k * interval_ns`` for every k, so interval ``i`` of the
metrics is interval ``i`` of the load. The first interval (index -1, phase ``before``) runs from
the baseline to the first boundary sampled; sampling after the load's planned end goes on (phase
``after``) until ``finish`` (at collect), which takes a last snapshot, or stops by itself
:data:`AFTER_END_S` past the end (a coordinator that never collects). Redis INFO is taken at
the boundaries of T0 and of the planned end, in threads of their own, so a slow server never
delays a snapshot.

The snapshot of T0 (and the start INFO) is taken :data:`T0_LEAD_NS` before T0, not at it: at T0
every load process of the host wakes to send its first requests, and a sampler reading /proc
for every process at that instant competed with them for the cores. On the 2-client lab
(bench/bench_start_skew.py, sleep-spin, 1 process per client, 20 repetitions) the start skew
was p50 3.6 ms / p99 8.9 ms with the snapshot at T0 and p50 0.42 ms / p99 2.3 ms with it 20 ms
before. Interval 0's metrics therefore cover those 20 ms too (its ``duration_ms`` says so).

Nothing here raises into the agent: a part that cannot be read is recorded as missing, with
its reason; an unexpected failure of the thread ends sampling and is kept in the report's
``missing``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Final

import psutil

from agent.drivers.kit.spin_counter import COUNTERS
from agent.metrics import cgroup, procfs
from agent.metrics.deltas import HostSnapshot, interval_between
from agent.metrics.model import MetricsInterval, MetricsPlan, MetricsReport, RedisInfo
from agent.metrics.server import info_process_id, listening_pids, take_info

log = logging.getLogger("agent.metrics")

#: Sampling stops by itself this long past the load's planned end.
AFTER_END_S: Final = 60.0
#: The snapshot of T0 is taken this long before T0, out of the load processes' way at T0.
T0_LEAD_NS: Final = 20_000_000
_READ_ERRORS: Final = (OSError, ValueError, KeyError, IndexError)


def load_process_pids() -> set[int]:
    """The agent's descendants: the load processes (and what they started)."""
    try:
        return {child.pid for child in psutil.Process().children(recursive=True)}
    except psutil.Error:
        return set()


class Snapshotter:
    """Reads one :class:`HostSnapshot`: the host's counters, the cgroup's, the watched
    processes'. ``load_pids`` and ``server_ports`` (server pid -> the target ports it
    listens on) may be replaced between reads."""

    def __init__(self, quota: cgroup.QuotaCgroup | None,
                 clock: Callable[[], int] = time.time_ns,
                 spun_ns: Callable[[int], int | None] = COUNTERS.spun_ns) -> None:
        self.quota = quota
        self.clock = clock
        self.spun_ns = spun_ns
        self.load_pids: set[int] = set()
        self.server_ports: dict[int, tuple[int, ...]] = {}

    def read(self) -> HostSnapshot:
        problems: dict[str, str] = {}

        def attempt(part: str, reader: Callable[[], object]) -> object:
            try:
                return reader()
            except _READ_ERRORS as exc:
                problems[part] = f"{type(exc).__name__}: {exc}"
                return None

        now = self.clock()
        stat = attempt("stat", procfs.read_stat)
        interfaces = attempt("interfaces", procfs.read_net_dev)
        tcp = attempt("tcp", procfs.read_tcp)
        memory = attempt("memory", procfs.read_memory)
        loadavg = attempt("loadavg", procfs.read_loadavg)
        quota = self.quota
        throttle = attempt("throttle", lambda: cgroup.read_throttling(quota)) if quota else None
        load = attempt("load_processes", self._load_processes)
        server = attempt("server_processes", self._server_processes)
        return HostSnapshot(
            time_ns=now,
            stat=stat if isinstance(stat, procfs.SystemStat) else None,
            interfaces=interfaces if isinstance(interfaces, dict) else None,
            tcp=tcp if isinstance(tcp, procfs.TcpCounters) else None,
            memory=memory if isinstance(memory, procfs.Memory) else None,
            load_average_1m=loadavg if isinstance(loadavg, float) else None,
            throttle=throttle if isinstance(throttle, cgroup.ThrottleCounters) else None,
            load_processes=load if isinstance(load, dict) else {},
            server_processes=server if isinstance(server, dict) else {},
            problems=problems,
        )

    def _server_processes(self) -> dict[int, procfs.ProcessTimes]:
        """The server processes still there, each with the target ports it listens on."""
        ports = self.server_ports
        return {pid: replace(times, ports=ports[pid])
                for pid, times in procfs.read_processes(ports).items()}

    def _load_processes(self) -> dict[int, procfs.ProcessTimes]:
        """The load processes still there: each one's CPU, its busy-poll count read right
        after it."""
        found = {}
        for pid in self.load_pids:
            times = procfs.read_process(pid)
            if times is not None:
                found[pid] = replace(times, spin_ns=self.spun_ns(pid))
        return found


class MetricsSampler:
    """One run's sampling on one host, from :meth:`start` to :meth:`finish`."""

    def __init__(self, plan: MetricsPlan, *,
                 find_load_pids: Callable[[], set[int]] = load_process_pids,
                 snapshotter: Snapshotter | None = None) -> None:
        self.plan = plan
        self._find_load_pids = find_load_pids
        self._missing: dict[str, str] = {}
        quota = None
        try:
            quota = cgroup.find_quota_cgroup()
        except _READ_ERRORS as exc:
            self._missing["throttling"] = f"cannot find the cgroup: {exc}"
        unseen = cgroup.unseen_cgroup() if quota is None else None
        if unseen is not None:
            self._missing["throttling"] = unseen
        self._snapshotter = snapshotter or Snapshotter(quota)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._t0_ns: int | None = None
        self._intervals: list[MetricsInterval] = []
        self._info: list[RedisInfo] = []
        self._info_threads: list[threading.Thread] = []
        self._previous: HostSnapshot | None = None
        self._previous_boundary: int | None = None
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def align(self, t0_ns: int) -> None:
        """The load's T0, in this host's clock: sampling follows its grid from now on.

        The load processes are found before T0 is published: a sampler thread that saw T0
        first could take the snapshot of T0 without them (finding them walks /proc, tens of
        ms on a busy host), leaving interval 0 without the load's CPU."""
        load_pids = self._find_load_pids()
        with self._lock:
            self._snapshotter.load_pids = load_pids
            self._t0_ns = t0_ns
        self._wake.set()

    @property
    def t0_ns(self) -> int | None:
        with self._lock:
            return self._t0_ns

    def latest(self) -> MetricsInterval | None:
        """The last interval sampled so far, if any."""
        with self._lock:
            return self._intervals[-1] if self._intervals else None

    def finish(self) -> MetricsReport:
        """Stop sampling, take the last (partial) interval, and report everything."""
        self._stopped.set()
        self._wake.set()
        self._thread.join()
        with self._lock:
            previous, boundary = self._previous, self._previous_boundary
        if previous is not None:
            try:
                self._append(previous, self._snapshotter.read(),
                             -1 if boundary is None else boundary)
            except Exception as exc:  # a bug must not cost the rest of the report
                log.exception("the last metrics interval failed")
                self._missing["last_interval"] = f"{type(exc).__name__}: {exc} (a bug)"
        for thread in self._info_threads:
            thread.join()
        with self._lock:
            return MetricsReport(
                interval_ns=self.plan.interval_ns, t0_ns=self._t0_ns,
                intervals=tuple(self._intervals),
                redis_info=tuple(sorted(self._info, key=lambda info: info.taken_ns)),
                missing=dict(self._missing),
            )  # fmt: skip

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._watch_server()
            with self._lock:
                self._previous = self._snapshotter.read()
            self._sample()
        except Exception as exc:
            log.exception("metrics sampling failed")
            with self._lock:
                self._missing["sampler"] = f"sampling stopped: {type(exc).__name__}: {exc}"

    def _watch_server(self) -> None:
        plan = self.plan
        if not plan.server_ports:
            return
        ports_of = listening_pids(plan.server_ports)
        if plan.redis is not None:  # a Redis run by another user: its pid from its INFO
            pid = info_process_id(take_info(plan.redis, "start", ("server",)))
            if pid is not None:
                ports_of[pid] = tuple(sorted({*ports_of.get(pid, ()), plan.redis.port}))
        if not ports_of:
            ports = ", ".join(map(str, plan.server_ports))
            self._missing["server_processes"] = f"no process seen listening on port {ports}"
        self._snapshotter.server_ports = ports_of

    def _sample(self) -> None:
        plan = self.plan
        while not self._stopped.is_set():
            t0 = self.t0_ns
            if t0 is None:
                self._wake.wait()
                continue
            last = plan.intervals + math.ceil(AFTER_END_S * 1e9 / plan.interval_ns)
            boundary = self._next_boundary(t0)
            if boundary > last:
                self._stopped.wait()
                return
            at_ns = t0 + boundary * plan.interval_ns - (T0_LEAD_NS if boundary == 0 else 0)
            if self._stopped.wait(max(0.0, (at_ns - time.time_ns()) / 1e9)):
                return
            snapshot = self._snapshotter.read()
            with self._lock:
                previous, previous_boundary = self._previous, self._previous_boundary
            if previous is None:
                raise RuntimeError("no baseline snapshot")
            self._append(previous, snapshot,
                         -1 if previous_boundary is None else previous_boundary)
            with self._lock:
                self._previous, self._previous_boundary = snapshot, boundary
            if boundary in (0, plan.intervals) and plan.redis is not None:
                self._take_info("start" if boundary == 0 else "end")

    def _next_boundary(self, t0_ns: int) -> int:
        """The first boundary after the last one sampled, and not in the past."""
        with self._lock:
            previous = self._previous_boundary
        due = math.ceil((time.time_ns() - t0_ns) / self.plan.interval_ns)
        return max(due, 0 if previous is None else previous + 1, 0)

    def _append(self, before: HostSnapshot, after: HostSnapshot, index: int) -> None:
        interval = interval_between(
            before, after, index=index, phase=self.plan.phase(index),
            quota=self._snapshotter.quota,
        )  # fmt: skip
        with self._lock:
            self._intervals.append(interval)

    def _take_info(self, moment: str) -> None:
        redis = self.plan.redis
        if redis is None:
            return

        def take() -> None:
            info = take_info(redis, moment)
            with self._lock:
                self._info.append(info)

        thread = threading.Thread(target=take, name=f"redis-info-{moment}", daemon=True)
        thread.start()
        self._info_threads.append(thread)
