"""A reconnection during the load that a server accepts but never answers (no TLS handshake, no
reply to AUTH) fails at its connect deadline and is retried with the back-off, in the builtin
driver's and the http driver's real event loops (issue 13, item 4).

Not a lab test: the server is a loopback listener of this test that accepts and never answers;
the load loop runs in a thread until the test sends it ``stop``. The deadline and the back-off
are shrunk (module-level tunables), and the retries are polled, never waited for by a sleep.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.drivers import http_worker, resp_connection
from agent.drivers.channel import Channel
from agent.drivers.http_worker import HttpWorker, HttpWorkerConfig, select_poller
from agent.drivers.kit.timed import IntervalGrid
from agent.drivers.resp_connection import ERROR_CONNECTION, IN
from agent.drivers.resp_tls import client_context
from agent.drivers.spec import Target, Timeline
from agent.drivers.worker import Worker, WorkerConfig
from agent.histograms import HistogramParams
from tests.helpers import poll_until

DEADLINE_S = 30.0
#: Long intervals: none ends while the test runs, so every error stays in the recorder.
TIMELINE = Timeline(interval_ns=60 * 10**9, warmup_intervals=0, measure_intervals=10)
#: The connect deadline and back-off of this test (the defaults are 5 s and up to 1 s).
CONNECT_TIMEOUT_S = 0.1
DELAYS_S = (0.0, 0.01)
#: Three connections accepted: the first two attempts failed at their deadline and were retried.
ACCEPTS = 3
#: The silent server never reads the AUTH that carries it.
PASSWORD = "never-checked"
HTTP_PARAMS: dict[str, Any] = {
    "processes": None, "connections": 1, "keyspace": 10, "timeout_ns": 60 * 10**9,
    "rate": None, "base_path": "", "headers": {},
    "requests": [{"name": "a", "method": "GET", "path": "/", "headers": {}, "body": None,
                  "weight": 1, "expect_status": None, "json_path": None}]}


class SilentServer:
    """A loopback listener that accepts connections and never reads or answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []

    def accepted_at_least(self, count: int) -> bool:
        while True:
            try:
                sock, _peer = self.listener.accept()
            except BlockingIOError:
                break
            self.accepted.append(sock)
        return len(self.accepted) >= count

    def close(self) -> None:
        for sock in self.accepted:
            sock.close()
        self.listener.close()


@pytest.fixture
def server() -> Iterator[SilentServer]:
    silent = SilentServer()
    yield silent
    silent.close()


@pytest.fixture
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (resp_connection, http_worker):
        monkeypatch.setattr(module, "CONNECT_TIMEOUT", CONNECT_TIMEOUT_S)
        monkeypatch.setattr(module, "RECONNECT_DELAYS_S", DELAYS_S)


@pytest.fixture
def channel_ends() -> Iterator[tuple[socket.socket, socket.socket]]:
    """The agent's and the load process's ends of the load's channel."""
    agent_end, load_end = socket.socketpair()
    yield agent_end, load_end
    agent_end.close()
    load_end.close()


def fails_and_retries(worker: Worker | HttpWorker, agent_end: socket.socket,
                      server: SilentServer) -> None:
    """Run ``worker``'s loop until the server accepted :data:`ACCEPTS` connections: each
    attempt before the last failed at its deadline, a ``connection`` error and nothing else."""
    try:
        run_until_accepted(worker.loop, Channel(agent_end), server)
        errors = worker.recorder.errors
        assert set(errors) == {ERROR_CONNECTION}, errors
        assert errors[ERROR_CONNECTION] >= ACCEPTS - 1, errors
    finally:
        worker.close()


def run_until_accepted(loop: Callable[[IntervalGrid], str], agent: Channel,
                       server: SilentServer) -> None:
    """Run ``loop`` in a thread until the server accepted :data:`ACCEPTS` connections, then
    stop it (also when they never come)."""
    now = time.time_ns()
    grid = IntervalGrid.at_first_send(TIMELINE, now, now, time.perf_counter_ns())
    ended: list[str] = []
    thread = threading.Thread(target=lambda: ended.append(loop(grid)), daemon=True)
    thread.start()
    try:
        poll_until(lambda: server.accepted_at_least(ACCEPTS), DEADLINE_S,
                   f"{ACCEPTS} connections to a server that never answers (each attempt "
                   f"failed at its {CONNECT_TIMEOUT_S:g} s deadline and retried)")
    finally:
        agent.send({"type": "stop"})
        thread.join(DEADLINE_S)
    assert ended == ["stopped"]


@pytest.mark.usefixtures("short_deadlines")
@pytest.mark.parametrize("stuck_in", ["auth", "tls"])
def test_a_builtin_reconnection_never_answered_fails_at_its_deadline_and_retries(
    server: SilentServer, stuck_in: str, channel_ends: tuple[socket.socket, socket.socket]
) -> None:
    # a password: AUTH is sent and never answered; TLS: the ClientHello is never answered
    target = Target("127.0.0.1", server.port, password=PASSWORD) if stuck_in == "auth" \
        else Target("127.0.0.1", server.port, tls={"verify": False})
    config = WorkerConfig(index=0, target=target, connections=1, pipeline=1, set_ratio=0.5,
                          keyspace=10, value_size=8, seed=1, preload=None, timeline=TIMELINE,
                          histogram=HistogramParams(), reply_timeout_s=60.0)
    agent_end, load_end = channel_ends
    worker = Worker(config, Channel(load_end))
    # As prepare leaves the worker, its one connection then dropped: it reconnects at once.
    if target.tls is not None:
        worker._tls = client_context(target.tls)
    worker._open_poller(load_end.fileno())
    for conn in worker.connections:
        conn.address = ("127.0.0.1", server.port)
        conn.next_batch = worker.mix.next_batch
        worker._schedule(conn)
    fails_and_retries(worker, agent_end, server)


@pytest.mark.usefixtures("short_deadlines")
def test_an_http_reconnection_whose_tls_handshake_never_ends_fails_at_its_deadline_and_retries(
    server: SilentServer, channel_ends: tuple[socket.socket, socket.socket]
) -> None:
    target = Target("127.0.0.1", server.port, tls={"verify": False})
    config = HttpWorkerConfig(index=0, processes=1, target=target, connections=1,
                              params=HTTP_PARAMS, seed=1, timeline=TIMELINE,
                              histogram=HistogramParams())
    agent_end, load_end = channel_ends
    worker = HttpWorker(config, Channel(load_end))
    # As prepare leaves the worker, its one connection then dropped: it reconnects at once.
    worker._address = ("127.0.0.1", server.port)
    worker._tls = client_context({"verify": False})
    worker._poller = select_poller()
    worker._poller.register(load_end.fileno(), IN)
    for conn in worker.connections:
        worker._schedule(conn)
    fails_and_retries(worker, agent_end, server)
