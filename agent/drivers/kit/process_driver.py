"""A driver whose load runs in load processes of its own: the agent-side half of the kit.

:class:`ProcessDriver` is a complete :class:`~agent.drivers.base.Driver` but for one thing: how
a spec splits into load processes (:meth:`ProcessDriver.plan_load`: each process's
``configure`` message and connections) and the module those processes run (a ``main`` built
on :mod:`agent.drivers.kit.child`). The rest is here: the processes started and read
(:mod:`agent.drivers.kit.supervisor`), readiness within a deadline, the start instant, live
progress (the latest interval every process delivered, merged), stop, the report (intervals
merged across processes when asked for), and close. A load process's interval comes as raw
counts (agent/drivers/kit/counted.py: its loop has a schedule to keep, the agent does not);
once every process delivered an interval, the reader thread adds their counts and encodes
each histogram once, and drops the raw counts.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from agent.drivers.base import (
    KIND_INTERNAL,
    KIND_STATE,
    KIND_WORKER,
    Driver,
    DriverError,
    LoadState,
    Prepared,
    Progress,
    no_keepalive,
    this_interpreter,
)
from agent.drivers.intervals import IntervalData, LoadReport, merge_intervals, p99_usec
from agent.drivers.kit.counted import CountedInterval, IntervalCounts, merge_counts
from agent.drivers.kit.supervisor import Supervisor
from agent.drivers.spec import LoadSpec
from agent.histograms import HistogramParams, IntervalRecorder

log = logging.getLogger("agent.drivers.kit.process_driver")

#: Longest wait for every load process to be ready (connections, preload).
PREPARE_TIMEOUT = 600.0
#: Longest wait for load processes to send their last interval after ``stop``.
STOP_TIMEOUT = 5.0
#: How often a waiting ``prepare`` calls its keepalive.
KEEPALIVE_PERIOD = 1.0


@dataclass(frozen=True)
class ProcessPlan:
    """One load process to start: its connections and its ``configure`` message's config."""

    connections: int
    config: dict[str, Any]


@dataclass
class _Process:
    """The driver's view of one load process."""

    index: int
    connections: int
    ready: bool = False
    error: DriverError | None = None
    first_send_ns: int | None = None  # its connections' earliest first request
    first_spread_ns: int = 0  # their latest minus earliest
    window_ns: int | None = None  # a one-window driver's measured run, from first_send_ns
    stopped_ns: int | None = None
    reason: str | None = None  # "completed" / "stopped" once finished
    lost: str | None = None  # why it ended without finishing
    preload_done: int = 0  # keys preloaded so far (the builtin driver's preload_progress)
    preload_total: int = 0
    preload_seconds: float | None = None  # its preload's wall time, once it is over
    intervals: dict[int, IntervalData | IntervalCounts] = field(default_factory=dict)
    """Encoded (an external tool's) or counts (the kit's loads: encoded once merged)."""

    @property
    def over(self) -> bool:
        return self.reason is not None or self.lost is not None


class ProcessDriver(Driver):
    """A driver whose load processes run ``process_module``'s ``main``."""

    #: The module each load process runs (its ``main(argv)``, see agent.drivers.kit.child).
    process_module: ClassVar[str]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state = LoadState.IDLE
        self._spec: LoadSpec | None = None
        self._processes: list[_Process] = []
        self._supervisor: Supervisor | None = None
        self._t0_ns: int | None = None
        self._stop_requested = False
        self._problem: str | None = None
        self._errors = 0  # over every interval received: progress() must not re-add them all
        self._merged: dict[int, IntervalData] = {}
        self._p99: dict[int, float | None] = {}  # of merged intervals, for progress()
        self._report: LoadReport | None = None
        self._encoder: IntervalRecorder | None = None  # encodes merged counts, one at a time
        self._encoding = threading.Lock()

    @abc.abstractmethod
    def plan_load(self, spec: LoadSpec) -> Sequence[ProcessPlan]:
        """The load processes ``spec`` needs; DriverError("config"...) if this host or driver
        cannot run it. Called once, by ``prepare``, before any process starts."""

    def pipeline(self, spec: LoadSpec) -> int | None:
        """Requests in flight per connection under ``spec`` (None: not pipelined), for
        :class:`Prepared`; called after :meth:`plan_load` accepted ``spec``."""
        return None

    # --- the Driver interface -----------------------------------------------------------

    def prepare(self, spec: LoadSpec, keepalive: Callable[[], None] = no_keepalive) -> Prepared:
        with self._lock:
            if self._state is not LoadState.IDLE:
                raise DriverError(KIND_STATE, "this driver was prepared already")
            self._state = LoadState.PREPARING
        try:
            plans = self.plan_load(spec)
            self._spec = spec
            self._encoder = IntervalRecorder(spec.histogram)
            self._processes = [_Process(i, plan.connections) for i, plan in enumerate(plans)]
            greetings = [{"type": "configure", "config": plan.config} for plan in plans]
            self._supervisor = Supervisor(self.process_module, greetings, self)
            self._supervisor.start()
            self._wait_ready(keepalive)
        except BaseException:
            self.close()
            with self._lock:
                self._state = LoadState.FAILED
            raise
        with self._lock:
            self._state = LoadState.PREPARED
        connections = sum(process.connections for process in self._processes)
        log.info("%s driver prepared: %d process(es), %d connection(s) to %s", self.name,
                 len(self._processes), connections, spec.target.endpoint)
        return Prepared(
            processes=len(self._processes),
            connections=connections,
            driver=self.name,
            driver_version=self.version,
            pipeline=self.pipeline(spec),
            interpreter=this_interpreter(),
            preload_seconds=max((p.preload_seconds for p in self._processes
                                 if p.preload_seconds is not None), default=None),
        )

    def start_at(self, t0_ns: int) -> None:
        with self._lock:
            if self._state is not LoadState.PREPARED:
                raise DriverError(KIND_STATE, f"cannot start a load that is {self._state.value}")
            self._state = LoadState.RUNNING
            self._t0_ns = t0_ns
        lateness = time.time_ns() - t0_ns
        if lateness > 0:
            log.warning("start instant is %.1f ms in the past: starting late", lateness / 1e6)
        self._supervised().send_all({"type": "start", "t0_ns": t0_ns})

    @property
    def state(self) -> LoadState:
        with self._lock:
            return self._state

    def progress(self) -> Progress:
        spec = self._spec
        with self._lock:
            state = self._state
            errors = self._errors
            index = self._last_common_interval()
            problem = self._problem
        if state is LoadState.PREPARING:
            with self._lock:
                total = sum(process.preload_total for process in self._processes)
                done = sum(process.preload_done for process in self._processes)
            if total:
                return Progress(state=state, errors=errors, problem=problem,
                                preload_done=done, preload_total=total)
        if spec is None or index is None:
            return Progress(state=state, errors=errors, problem=problem)
        merged = self._merged_interval(index)
        p99 = self._p99.get(index)
        if p99 is None:
            p99 = self._p99[index] = p99_usec(merged, spec.histogram)
        return Progress(
            state=state,
            interval=index,
            phase=merged.phase,
            ops_per_sec=merged.count / (spec.timeline.interval_ns / 1e9),
            p99_usec=p99,
            errors=errors,
            problem=problem,
        )

    def stop(self) -> None:
        with self._lock:
            if self._state not in (LoadState.PREPARED, LoadState.RUNNING):
                return
            self._stop_requested = True
        self._supervised().send_all({"type": "stop"})
        deadline = time.monotonic() + STOP_TIMEOUT
        with self._changed:
            while not all(process.over for process in self._processes):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("load processes did not all report their end after stop")
                    break
                self._changed.wait(remaining)
            if not self._state.done:
                self._state = LoadState.STOPPED

    def report(self) -> LoadReport:
        with self._lock:
            if not self._state.done or self._spec is None:
                raise DriverError(KIND_STATE, f"no report while the load is {self._state.value}")
            if self._report is not None:
                return self._report
            spec = self._spec
            processes = list(self._processes)
            indices = sorted({i for process in processes for i in process.intervals})
            firsts = [p.first_send_ns for p in processes if p.first_send_ns is not None]
            lasts = [p.first_send_ns + p.first_spread_ns
                     for p in processes if p.first_send_ns is not None]
            stops = [p.stopped_ns for p in processes if p.stopped_ns is not None]
            run_ends = [p.first_send_ns + p.window_ns for p in processes
                        if p.first_send_ns is not None and p.window_ns is not None]
        t0_ns = self._t0_ns if self._t0_ns is not None else 0
        started_ns = min(firsts) if firsts else t0_ns
        report = LoadReport(
            driver=self.name,
            t0_ns=t0_ns,
            started_ns=started_ns,
            start_spread_ns=max(firsts) - min(firsts) if firsts else 0,
            first_request_spread_ns=max(lasts) - min(firsts) if firsts else 0,
            stopped_ns=max(stops) if stops else started_ns,
            interval_ns=spec.timeline.interval_ns,
            warmup_intervals=spec.timeline.warmup_intervals,
            measure_intervals=spec.timeline.measure_intervals,
            histogram=spec.histogram,
            processes=len(processes),
            connections=sum(process.connections for process in processes),
            intervals=tuple(self._merged_interval(index) for index in indices),
            window_ns=max(run_ends) - started_ns if run_ends else None,
        )
        with self._lock:
            self._report = report
        return report

    def close(self) -> None:
        with self._lock:
            running = self._state in (LoadState.PREPARED, LoadState.RUNNING)
        if running:
            self.stop()
        if self._supervisor is not None:
            self._supervisor.close()  # idempotent

    def worker_pids(self) -> list[int]:
        """Process ids of the load processes started so far (for diagnostics and tests)."""
        return self._supervisor.pids() if self._supervisor is not None else []

    # --- internals ----------------------------------------------------------------------

    def _supervised(self) -> Supervisor:
        if self._supervisor is None:
            raise DriverError(KIND_STATE, "no load processes")
        return self._supervisor

    def _wait_ready(self, keepalive: Callable[[], None]) -> None:
        deadline = time.monotonic() + PREPARE_TIMEOUT
        with self._changed:
            while True:
                failed = [p for p in self._processes if p.error is not None or p.lost]
                if failed:
                    first = failed[0]
                    if first.error is not None:
                        raise first.error
                    raise DriverError(KIND_WORKER, f"load process {first.index}: {first.lost}")
                if all(process.ready for process in self._processes):
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DriverError(
                        KIND_WORKER,
                        f"load processes not ready after {PREPARE_TIMEOUT:g} s "
                        "(preloading too slow?)",
                    )
                self._changed.wait(min(remaining, KEEPALIVE_PERIOD))
                keepalive()

    def _last_common_interval(self) -> int | None:
        """The last interval every load process has delivered, None until each has delivered
        one (lock held)."""
        lasts = [max(p.intervals) for p in self._processes if p.intervals]
        if len(lasts) < len(self._processes) or not lasts:
            return None
        return min(lasts)

    def _merged_interval(self, index: int) -> IntervalData:
        """Interval ``index`` merged over load processes; cached once final, when the
        processes' raw counts of it are dropped (only their counters stay)."""
        spec = self._spec
        if spec is None:
            raise DriverError(KIND_STATE, "no load was prepared")
        with self._lock:
            cached = self._merged.get(index)
            if cached is not None:
                return cached
            parts = [p.intervals[index] for p in self._processes if index in p.intervals]
            final = all(index in p.intervals or p.over for p in self._processes)
        merged = self._merge(parts, spec.histogram)
        if final:
            with self._lock:
                self._merged[index] = merged
                for process in self._processes:
                    part = process.intervals.get(index)
                    if isinstance(part, IntervalCounts):
                        process.intervals[index] = replace(part, commands={}, shards={},
                                                           lateness=None)
        return merged

    def _merge_if_final(self, index: int) -> None:
        """Merge interval ``index`` as soon as every load process delivered it: a long run's
        raw counts of many processes would not fit in memory until the report (a few hundred
        kilobytes per process and interval, against one encoded histogram merged)."""
        with self._lock:
            if index in self._merged or not all(index in p.intervals or p.over
                                                for p in self._processes):
                return
        self._merged_interval(index)

    # --- called by the supervisor's thread ----------------------------------------------

    def on_message(self, index: int, message: dict[str, Any]) -> None:
        process = self._processes[index]
        kind = message["type"]
        interval = self._interval(message) if kind in ("interval", "interval_counts") else None
        with self._changed:
            if kind == "ready":
                process.ready = True
            elif kind == "error":
                error = DriverError(str(message["kind"]), str(message["message"]))
                if process.ready or self._state is LoadState.RUNNING:
                    process.lost = error.message
                    self._fail(f"load process {process.index} failed: {error}")
                else:
                    process.error = error
            elif kind == "preload_progress":  # the builtin driver's preload, as it goes
                process.preload_done = int(message["done"])
                process.preload_total = int(message["total"])
            elif kind == "preloaded":  # the builtin driver's preload, for the agent's log
                keys, seconds = int(message["keys"]), float(message["seconds"])
                process.preload_done = process.preload_total = keys
                process.preload_seconds = seconds
                log.info("load process %d preloaded %d keys in %.2f s (%.0f keys/s)",
                         process.index, keys, seconds, keys / seconds if seconds > 0 else 0.0)
            elif kind == "started":
                process.first_send_ns = int(message["first_send_ns"])
                process.first_spread_ns = int(message.get("first_spread_ns", 0))
                if message.get("window_ns") is not None:
                    process.window_ns = int(message["window_ns"])
            elif interval is not None:
                process.intervals[interval.index] = interval  # each index comes once
                self._errors += interval.error_count
            elif kind == "finished":
                process.stopped_ns = int(message["stopped_ns"])
                process.reason = str(message["reason"])
                self._settle()
            self._changed.notify_all()
        if isinstance(interval, IntervalCounts):
            self._merge_if_final(interval.index)

    def _interval(self, message: dict[str, Any]) -> IntervalData | IntervalCounts:
        """An interval message's data: an external tool's comes encoded; a load process's
        counts are unpacked here, outside the lock, and encoded once merged."""
        if message["type"] == "interval":
            return IntervalData.from_json(message["interval"])
        return CountedInterval.from_json(message["interval"]).unpacked()

    def _merge(self, parts: Sequence[IntervalData | IntervalCounts],
               histogram: HistogramParams) -> IntervalData:
        """One interval of every load process: counts added and encoded once
        (agent/drivers/kit/counted.py), encoded intervals added."""
        expected = len(self._processes)
        counted = [part for part in parts if isinstance(part, IntervalCounts)]
        if len(counted) == len(parts):
            with self._encoding:  # (progress and the report may merge at once)
                return merge_counts(counted, self._encoder or IntervalRecorder(histogram),
                                    expected)
        encoded = [part if isinstance(part, IntervalData) else merge_counts(
            [part], IntervalRecorder(histogram), 1) for part in parts]
        return merge_intervals(encoded, histogram, expected)

    def on_closed(self, index: int, status: int | None) -> None:
        process = self._processes[index]
        with self._changed:
            if not process.over and process.error is None:
                how = f"exit status {status}" if status is not None else "no exit status"
                if status is not None and status < 0:
                    how = f"killed by signal {-status}"
                process.lost = f"ended unexpectedly ({how})"
                if self._state in (LoadState.RUNNING, LoadState.PREPARED):
                    self._fail(f"load process {process.index} {process.lost}")
            self._changed.notify_all()

    def on_spawn_failure(self, indices: Sequence[int], problem: str) -> None:
        with self._changed:
            for index in indices:
                self._processes[index].lost = problem
            self._changed.notify_all()

    def on_reader_failure(self) -> None:
        with self._changed:
            self._fail(f"{KIND_INTERNAL}: the agent's reader of load processes failed")
            for process in self._processes:
                if not process.over:
                    process.lost = "its reader failed"
            self._changed.notify_all()

    def _fail(self, problem: str) -> None:
        """(lock held) A load process broke: the load has failed."""
        log.error("%s", problem)
        if self._problem is None:
            self._problem = problem
        if self._state in (LoadState.RUNNING, LoadState.PREPARED):
            self._state = LoadState.FAILED

    def _settle(self) -> None:
        """(lock held) Every load process finished: the load is over."""
        if self._state is not LoadState.RUNNING:
            return
        if all(process.over for process in self._processes):
            stopped = self._stop_requested or any(
                process.reason == "stopped" for process in self._processes
            )
            self._state = LoadState.STOPPED if stopped else LoadState.FINISHED
