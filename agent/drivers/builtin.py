"""The builtin driver: a Redis/RESP load generator in load processes of its own.

``params`` of a ``"driver": "builtin"`` spec (all required but ``seed``)::

    {"processes": null | P,     null: this host's usable cores (CPU affinity respected)
     "connections": C,          over all processes, spread evenly (P is at most C)
     "pipeline": N,             requests per batch on a connection (closed loop)
     "set_ratio": 0.1,          share of SETs; the rest are GETs
     "keyspace": K,             keys key:0 .. key:K-1, uniform
     "value_size": B,           bytes per SET value
     "rate": null,              open loop (a target rate): not supported yet
     "preload": false,          SET every key once during prepare, so GETs hit
     "seed": null | S}          optional: the request streams' seed (default: random)

Each load process (:mod:`agent.drivers.worker`) runs its share of the connections and sends
every finished interval to the agent over its channel. One thread of the agent
(:class:`_Collector`) starts the processes, then only reads their channels (it sleeps in
``select`` between messages, so the agent's own CPU stays near zero during a load); the
intervals are merged across processes when asked for (``progress`` merges the latest one,
``report`` all), never in the collector.

The thread that starts the processes lives as long as the driver: Linux delivers
``PR_SET_PDEATHSIG`` when the *thread* that forked a child ends, so processes started from an
RPyC connection's thread would die with that connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import psutil

from agent.drivers import worker
from agent.drivers.base import (
    KIND_CONFIG,
    KIND_INTERNAL,
    KIND_STATE,
    KIND_WORKER,
    Driver,
    DriverError,
    LoadState,
    Prepared,
    Progress,
    no_keepalive,
)
from agent.drivers.builtin_params import BuiltinParams, load_shapes, parse_params, plan
from agent.drivers.channel import Channel, ChannelClosed
from agent.drivers.errors import KIND_MEMORY
from agent.drivers.intervals import IntervalData, LoadReport, merge_intervals, p99_usec
from agent.drivers.memory import load_bytes, memory_problem
from agent.drivers.spec import LoadSpec
from agent.drivers.worker import WorkerConfig, boot_argv, check_source_address

log = logging.getLogger("agent.drivers.builtin")

#: Longest wait for every load process to be ready (connections, preload).
PREPARE_TIMEOUT = 600.0
#: Longest wait for load processes to send their last interval after ``stop``.
STOP_TIMEOUT = 5.0
#: Time a load process has to exit after its channel closed, before SIGKILL.
EXIT_TIMEOUT = 2.0
#: How often a waiting ``prepare`` calls its keepalive.
KEEPALIVE_PERIOD = 1.0

_SEED_SPREAD: Final = 0x9E3779B97F4A7C15


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def available_memory_bytes() -> int:
    """Memory the host can give without swapping (psutil's ``available``)."""
    return int(psutil.virtual_memory().available)


@dataclass
class _Process:
    """The agent's view of one load process."""

    index: int
    channel: Channel
    child_end: socket.socket | None
    config: WorkerConfig
    popen: subprocess.Popen[bytes] | None = None
    ready: bool = False
    error: DriverError | None = None
    first_send_ns: int | None = None
    stopped_ns: int | None = None
    reason: str | None = None  # "completed" / "stopped" once finished
    lost: str | None = None  # why it ended without finishing
    intervals: dict[int, IntervalData] = field(default_factory=dict)

    @property
    def over(self) -> bool:
        return self.reason is not None or self.lost is not None


class BuiltinDriver(Driver):
    name = "builtin"

    def __init__(
        self, cores: int | None = None, available_memory: Callable[[], int] | None = None
    ) -> None:
        self._cores = cores if cores is not None else usable_cores()
        self._available_memory = available_memory or available_memory_bytes
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state = LoadState.IDLE
        self._spec: LoadSpec | None = None
        self._processes: list[_Process] = []
        self._collector: _Collector | None = None
        self._t0_ns: int | None = None
        self._stop_requested = False
        self._problem: str | None = None
        self._errors = 0  # over every interval received: progress() must not re-add them all
        self._merged: dict[int, IntervalData] = {}
        self._p99: dict[int, float | None] = {}  # of merged intervals, for progress()
        self._report: LoadReport | None = None

    # --- the Driver interface -----------------------------------------------------------

    def prepare(self, spec: LoadSpec, keepalive: Callable[[], None] = no_keepalive) -> Prepared:
        with self._lock:
            if self._state is not LoadState.IDLE:
                raise DriverError(KIND_STATE, "this driver was prepared already")
            self._state = LoadState.PREPARING
        try:
            params = parse_params(dict(spec.params))
            if spec.target.tls is not None:
                raise DriverError(KIND_CONFIG, "TLS is not supported by the builtin driver yet")
            self._check_memory(params)
            check_source_address(spec.target.source_address)
            self._spec = spec
            self._processes = self._make_processes(spec, params)
            self._collector = _Collector(self)
            self._collector.start()
            self._wait_ready(keepalive)
        except BaseException:
            self.close()
            with self._lock:
                self._state = LoadState.FAILED
            raise
        with self._lock:
            self._state = LoadState.PREPARED
        connections = sum(process.config.connections for process in self._processes)
        log.info(
            "builtin driver prepared: %d process(es), %d connection(s) to %s",
            len(self._processes),
            connections,
            spec.target.endpoint,
        )
        return Prepared(processes=len(self._processes), connections=connections)

    def start_at(self, t0_ns: int) -> None:
        with self._lock:
            if self._state is not LoadState.PREPARED:
                raise DriverError(KIND_STATE, f"cannot start a load that is {self._state.value}")
            self._state = LoadState.RUNNING
            self._t0_ns = t0_ns
        lateness = time.time_ns() - t0_ns
        if lateness > 0:
            log.warning("start instant is %.1f ms in the past: starting late", lateness / 1e6)
        for process in self._processes:
            with contextlib.suppress(ChannelClosed):  # a dead process is noticed by the reader
                process.channel.send({"type": "start", "t0_ns": t0_ns})

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
        for process in self._processes:
            with contextlib.suppress(ChannelClosed):
                process.channel.send({"type": "stop"})
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
            stops = [p.stopped_ns for p in processes if p.stopped_ns is not None]
        t0_ns = self._t0_ns if self._t0_ns is not None else 0
        started_ns = min(firsts) if firsts else t0_ns
        report = LoadReport(
            driver=self.name,
            t0_ns=t0_ns,
            started_ns=started_ns,
            start_spread_ns=max(firsts) - min(firsts) if firsts else 0,
            stopped_ns=max(stops) if stops else started_ns,
            interval_ns=spec.timeline.interval_ns,
            warmup_intervals=spec.timeline.warmup_intervals,
            measure_intervals=spec.timeline.measure_intervals,
            histogram=spec.histogram,
            processes=len(processes),
            connections=sum(process.config.connections for process in processes),
            intervals=tuple(self._merged_interval(index) for index in indices),
        )
        with self._lock:
            self._report = report
        return report

    def close(self) -> None:
        with self._lock:
            running = self._state in (LoadState.PREPARED, LoadState.RUNNING)
        if running:
            self.stop()
        collector, self._collector = self._collector, None
        for process in self._processes:
            process.channel.shutdown_write()  # the process reads the end, and exits
            if process.child_end is not None:
                process.child_end.close()
                process.child_end = None
        if collector is not None:
            collector.finish(EXIT_TIMEOUT)
        for process in self._processes:
            process.channel.close()
            _end_process(process.popen)

    def worker_pids(self) -> list[int]:
        """Process ids of the load processes started so far (for diagnostics and tests)."""
        return [p.popen.pid for p in self._processes if p.popen is not None]

    # --- internals ----------------------------------------------------------------------

    def _check_memory(self, params: BuiltinParams) -> None:
        """Refuse, before any process starts, a load the host has not the memory for."""
        shapes = load_shapes(params, self._cores)
        needed = load_bytes(shapes, preload_batch=worker.PRELOAD_BATCH, recv_size=worker.RECV_SIZE)
        available = self._available_memory()
        problem = memory_problem(needed, available, len(shapes))
        if problem is not None:
            raise DriverError(KIND_MEMORY, problem)
        log.info("the load needs about %d bytes of memory; %d available", needed, available)

    def _make_processes(self, spec: LoadSpec, params: BuiltinParams) -> list[_Process]:
        base_seed = params.seed if params.seed is not None else random.getrandbits(63)
        processes = []
        for index, (connections, keys) in enumerate(plan(params, self._cores)):
            parent_end, child_end = socket.socketpair()
            config = WorkerConfig(
                index=index,
                target=spec.target,
                connections=connections,
                pipeline=params.pipeline,
                set_ratio=params.set_ratio,
                keyspace=params.keyspace,
                value_size=params.value_size,
                seed=(base_seed + index * _SEED_SPREAD) % (1 << 64),
                preload=keys if params.preload else None,
                timeline=spec.timeline,
                histogram=spec.histogram,
            )
            processes.append(_Process(index, Channel(parent_end), child_end, config))
        return processes

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
        """Interval ``index`` merged over load processes; cached once final."""
        spec = self._spec
        if spec is None:
            raise DriverError(KIND_STATE, "no load was prepared")
        with self._lock:
            cached = self._merged.get(index)
            if cached is not None:
                return cached
            parts = [p.intervals[index] for p in self._processes if index in p.intervals]
            final = all(index in p.intervals or p.over for p in self._processes)
        merged = merge_intervals(parts, spec.histogram, len(self._processes))
        if final:
            with self._lock:
                self._merged[index] = merged
        return merged

    # --- called by the collector thread -------------------------------------------------

    def _on_message(self, process: _Process, message: dict[str, Any]) -> None:
        kind = message["type"]
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
            elif kind == "started":
                process.first_send_ns = int(message["first_send_ns"])
            elif kind == "interval":
                interval = IntervalData.from_json(message["interval"])
                process.intervals[interval.index] = interval  # each index comes once
                self._errors += interval.error_count
            elif kind == "finished":
                process.stopped_ns = int(message["stopped_ns"])
                process.reason = str(message["reason"])
                self._settle()
            self._changed.notify_all()

    def _on_closed(self, process: _Process) -> None:
        status = None
        if process.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                status = process.popen.wait(EXIT_TIMEOUT)
        with self._changed:
            if not process.over and process.error is None:
                how = f"exit status {status}" if status is not None else "no exit status"
                if status is not None and status < 0:
                    how = f"killed by signal {-status}"
                process.lost = f"ended unexpectedly ({how})"
                if self._state in (LoadState.RUNNING, LoadState.PREPARED):
                    self._fail(f"load process {process.index} {process.lost}")
            self._changed.notify_all()

    def _on_spawn_failure(self, exc: BaseException) -> None:
        with self._changed:
            for process in self._processes:
                if process.popen is None:
                    process.lost = f"could not start: {exc}"
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


class _Collector(threading.Thread):
    """Starts the load processes, then reads their channels until they close."""

    def __init__(self, driver: BuiltinDriver) -> None:
        super().__init__(name="builtin-driver", daemon=True)
        self._driver = driver
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._shutting = False

    def finish(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every channel to close, then stop reading.

        The load processes die with this thread (``PR_SET_PDEATHSIG``), hence the wait."""
        if self is not threading.current_thread():
            self.join(timeout)
        self._shutting = True
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")
        if self is not threading.current_thread():
            self.join(timeout)
        self._wake_writer.close()
        self._wake_reader.close()

    def run(self) -> None:
        driver = self._driver
        try:
            for process in driver._processes:
                if process.child_end is None:  # closed already: the driver is closing
                    break
                fd = process.child_end.fileno()
                process.popen = subprocess.Popen(
                    boot_argv(fd),
                    pass_fds=(fd,),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    close_fds=True,
                )
                process.child_end.close()
                process.child_end = None
                process.channel.send({"type": "configure", "config": process.config.to_json()})
        except (OSError, ChannelClosed) as exc:
            log.error("cannot start load processes: %s", exc)
            driver._on_spawn_failure(exc)
        try:
            self._read(driver._processes)
        except Exception:  # a bug: the driver must hear of it rather than wait forever
            log.exception("the builtin driver's reader failed")
            with driver._changed:
                driver._fail(f"{KIND_INTERNAL}: the agent's reader of load processes failed")
                for process in driver._processes:
                    if not process.over:
                        process.lost = "its reader failed"
                driver._changed.notify_all()

    def _read(self, processes: list[_Process]) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_reader, selectors.EVENT_READ, None)
            for process in processes:
                if process.popen is not None:
                    selector.register(process.channel.sock, selectors.EVENT_READ, process)
            open_channels = sum(1 for process in processes if process.popen is not None)
            while open_channels and not self._shutting:
                for key, _events in selector.select():
                    process = key.data
                    if process is None or self._shutting:
                        continue
                    try:
                        process.channel.read_available()
                        messages = process.channel.take()
                    except ChannelClosed:
                        messages = None
                    for message in messages or ():
                        self._driver._on_message(process, message)
                    if messages is None:
                        selector.unregister(process.channel.sock)
                        open_channels -= 1
                        self._driver._on_closed(process)


def _end_process(popen: subprocess.Popen[bytes] | None) -> None:
    """Let a load process exit (its channel is closed), then make sure it did."""
    if popen is None:
        return
    try:
        popen.wait(EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        popen.terminate()
        try:
            popen.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
