"""The netperf baseline on one host: its netserver, and the netperf runs it starts from here.

The coordinator asks which of ``netperf`` and ``netserver`` this host has (:meth:`tools`,
before any load starts), starts ``netserver`` bound to the host's inventory address
(:meth:`start_server`), runs ``netperf`` towards other hosts one at a time
(:meth:`start_netperf`, then :meth:`netperf_result` until done: a run lasts seconds, and the
connection's heartbeats must be answered meanwhile) and stops the netserver
(:meth:`stop_server`). Figures are read on the coordinator's side (``coordinator.core.netperf``):
this module only runs the programs and hands back what they printed.

Both programs run in the agent's process group, so whatever ends the agent (``stop()``, the
watchdog when the coordinator is lost, SIGTERM, end of stdin after Ctrl-C) ends them too
(:func:`agent.processes.stop_group`); :meth:`close` stops them earlier when asked.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from typing import Final

import psutil

from agent.drivers.errors import KIND_CONFIG, KIND_STATE, DriverError
from agent.messages import (
    BaselineTools,
    FindBaselineTools,
    NetperfResult,
    NetperfStarted,
    NetserverStarted,
    NetserverStopped,
    RunNetperf,
    StartNetserver,
)
from agent.processes import wait_gone

RR_SELECTORS: Final = ("MIN_LATENCY,MEAN_LATENCY,P50_LATENCY,P90_LATENCY,P99_LATENCY,"
                       "MAX_LATENCY,STDDEV_LATENCY,TRANSACTION_RATE")
"""netperf's ``-o`` output selectors of a TCP_RR run: the latency distribution and its rate."""
STREAM_SELECTORS: Final = "THROUGHPUT,THROUGHPUT_UNITS"
TESTS: Final = frozenset({"TCP_RR", "TCP_STREAM"})
NETSERVER_READY_TIMEOUT: Final = 10.0
"""How long a started netserver has to accept connections on its port."""
NETPERF_GRACE_S: Final = 30.0
"""A netperf still running this long after its test's length is killed (a hung netserver)."""
OUTPUT_LIMIT: Final = 16_384
_STOP_GRACE: Final = 2.0
_TICK: Final = 0.02


class Baseline:
    """One host's netserver and its current netperf run; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: subprocess.Popen[bytes] | None = None
        self._netperf: subprocess.Popen[bytes] | None = None
        self._netperf_deadline = 0.0
        self._timed_out = False

    @staticmethod
    def tools(request: FindBaselineTools) -> BaselineTools:
        """Where ``netperf`` and ``netserver`` are on ``search_path`` (the agent's PATH when
        None); None for a program that is not there."""
        return BaselineTools(netperf=shutil.which("netperf", path=request.search_path),
                             netserver=shutil.which("netserver", path=request.search_path))

    def start_server(self, request: StartNetserver) -> NetserverStarted:
        """``netserver -D -L ADDRESS -p PORT``, answered once it accepts connections."""
        program = shutil.which("netserver", path=request.search_path)
        if program is None:
            raise DriverError(KIND_CONFIG, "netserver is not on this host's PATH")
        with self._lock:
            if self._server is not None and self._server.poll() is None:
                raise DriverError(KIND_STATE, f"netserver already runs (pid {self._server.pid})")
            server = subprocess.Popen(  # a list: no shell
                [program, "-D", "-L", request.address, "-p", str(request.port)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self._server = server
        deadline = time.monotonic() + NETSERVER_READY_TIMEOUT
        while not _accepts(request.address, request.port):
            if server.poll() is not None:
                said = _read_all(server)
                raise DriverError(KIND_CONFIG, f"netserver on {request.address} port "
                                  f"{request.port} exited with status {server.returncode}: "
                                  f"{said or 'nothing printed'}")
            if time.monotonic() > deadline:
                self.stop_server()
                raise DriverError(KIND_CONFIG, f"netserver did not listen on {request.address} "
                                  f"port {request.port} within {NETSERVER_READY_TIMEOUT:g} s")
            time.sleep(_TICK)
        return NetserverStarted(pid=server.pid)

    def stop_server(self) -> NetserverStopped:
        """Stop this agent's netserver and the test processes it forked; idempotent."""
        with self._lock:
            server, self._server = self._server, None
        if server is None:
            return NetserverStopped(was_running=False)
        was_running = server.poll() is None
        _end_tree(server)
        return NetserverStopped(was_running=was_running)

    def start_netperf(self, request: RunNetperf) -> NetperfStarted:
        """Start one netperf run towards ``request.host``; answered at once."""
        if request.test not in TESTS:
            raise DriverError(KIND_CONFIG, f"unknown baseline test {request.test!r}")
        program = shutil.which("netperf", path=request.search_path)
        if program is None:
            raise DriverError(KIND_CONFIG, "netperf is not on this host's PATH")
        command = [program, "-H", request.host, "-p", str(request.port), "-t", request.test,
                   "-l", str(request.duration_s)]
        if request.local_address is not None:
            command += ["-L", request.local_address]
        if request.test == "TCP_RR":
            command += ["--", "-r", f"{request.request_size},{request.response_size}",
                        "-o", RR_SELECTORS]
        else:
            command += ["--", "-o", STREAM_SELECTORS]
        with self._lock:
            if self._netperf is not None and self._netperf.poll() is None:
                raise DriverError(KIND_STATE, "a netperf run is already going on this host")
            self._netperf = subprocess.Popen(  # a list: no shell
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT)
            self._netperf_deadline = time.monotonic() + request.duration_s + NETPERF_GRACE_S
            self._timed_out = False
            return NetperfStarted(pid=self._netperf.pid)

    def netperf_result(self) -> NetperfResult:
        """The current run: still going, or its exit status and output (killed, and said so,
        when it outlived its length by :data:`NETPERF_GRACE_S`)."""
        with self._lock:
            netperf = self._netperf
            if netperf is None:
                raise DriverError(KIND_STATE, "no netperf run was started")
            if netperf.poll() is None:
                if time.monotonic() < self._netperf_deadline:
                    return NetperfResult(done=False, exit_status=None, output="",
                                         timed_out=False)
                self._timed_out = True
                _end_tree(netperf)
            output = _read_all(netperf)
            return NetperfResult(done=True, exit_status=netperf.returncode, output=output,
                                 timed_out=self._timed_out)

    def close(self) -> None:
        """Stop the netserver and any netperf run."""
        self.stop_server()
        with self._lock:
            netperf, self._netperf = self._netperf, None
        if netperf is not None:
            _end_tree(netperf)


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False


def _read_all(process: subprocess.Popen[bytes]) -> str:
    """What an ended process printed (its output is small: a banner, a header, values)."""
    if process.stdout is None:
        return ""
    with process.stdout:
        data = process.stdout.read(OUTPUT_LIMIT)
    return data.decode("utf-8", "replace").strip()


def _end_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``process`` and what it forked, SIGKILL what is left after a grace; reap it."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    for proc in children:
        try:
            proc.terminate()
        except psutil.Error:
            continue
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(_STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    alive = wait_gone(children, _STOP_GRACE)  # a zombie nobody reaps yet counts as gone
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            continue
