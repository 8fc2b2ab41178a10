"""One load process of the http driver: N keep-alive HTTP/1.1 connections, a closed or an open
loop, over plain TCP or TLS.

Started and timed by the kit like the builtin driver's (:mod:`agent.drivers.worker`): one
``epoll`` over plain non-blocking sockets, one request in flight per connection (no
pipelining), the next sent as soon as the response is complete. A response's latency is the
time from its request's ``send`` to the ``recv`` that completed it, recorded in its
template's histogram (named after the template). Responses with another status than the
template expects count as ``http_4xx``/``http_5xx``/``http_status`` errors, a failed JSON
check as ``check``; those are left out of the histograms. A connection that closes or fails
with a request in flight counts a ``connection`` error and reconnects (non-blocking, with
the RESP loop's back-off); a request unanswered after ``timeout_ns`` counts a ``timeout``
error and its connection is replaced. A reconnection not ready within ``CONNECT_TIMEOUT``
(the RESP loop's: a server that accepts but never finishes the TLS handshake) is a failed
attempt, a ``connection`` error retried with the back-off; it is looked at with the request
timeouts (every :data:`TIMEOUT_CHECK_NS`). A server that closes a connection after a response
(``Connection: close``) is reconnected without an error.

At the planned end the loop drains as the builtin driver's does (timeline.drain_ns).

**Open loop** (``params.rate``): the builtin driver's, with its parts
(:mod:`agent.drivers.schedule`, :func:`agent.drivers.open_worker.schedule_counts`): each
connection has its own schedule of intended send times (the host's rate spread over its
connections, constant or Poisson, staggered); an idle connection waits in a heap for its point,
a busy one queues (its next request goes out as soon as the response is in, late). A latency
counts from the intended time (``sent_ns`` is the point); the timeout and the gap count from the
actual send (``issued_ns``). Each interval carries the schedule's accounting (sent, late,
largest lateness, not sent).

**TLS** (``target.tls``, :mod:`agent.drivers.resp_tls` as for RESP): the first connections
shake hands blocking in ``prepare`` (a refused certificate is one line there); a reconnection
shakes hands without blocking inside the loop; reads and writes go through the TLS socket's
non-blocking wrappers. Plain TCP keeps the socket's own methods.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import random
import select
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from heapq import heappop, heappush
from pathlib import Path
from typing import Any, Final, NoReturn

from agent.drivers.channel import Channel
from agent.drivers.errors import KIND_CONFIG, KIND_UNREACHABLE, DriverError
from agent.drivers.http_params import HttpParams, parse_params
from agent.drivers.http_request import CompiledRequest, compile_request, picker
from agent.drivers.http_response import (
    ERROR_CHECK,
    ERROR_PROTOCOL,
    ParseError,
    ResponseReader,
    has_json_path,
    status_error,
)
from agent.drivers.kit import spin_counter
from agent.drivers.kit.child import child_main
from agent.drivers.kit.recorder import LoadRecorder
from agent.drivers.kit.timed import COMPLETED, STOPPED, IntervalGrid, run_timed, stop_requested
from agent.drivers.open_worker import accounting_instant, poll_timeout_s, schedule_counts
from agent.drivers.resp_connection import (
    CONNECT_TIMEOUT,
    ERR,
    HUP,
    IN,
    OUT,
    READ_EVENTS,
    RECONNECT_DELAYS_S,
    RECV_SIZE,
    PollAdapter,
    bind_source,
    describe_os_error,
)
from agent.drivers.resp_tls import (
    HANDSHAKE_FAILED,
    HANDSHAKE_READ,
    HANDSHAKE_WRITE,
    client_context,
    describe_tls_error,
    handshake_step,
    server_name,
    tls_recv_into,
    tls_send,
)
from agent.drivers.schedule import (
    POISSON,
    ConnectionSchedule,
    ScheduleCounters,
    connection_rate,
    stagger,
)
from agent.drivers.spec import Target, Timeline, parse_target
from agent.drivers.worker import OpenLoopPlan
from agent.histograms import HistogramParams

MODULE: Final = "agent.drivers.http_worker"
ERROR_CONNECTION: Final = "connection"
ERROR_TIMEOUT: Final = "timeout"
#: How often the loop looks for requests past their timeout and reconnections past their
#: connect deadline.
TIMEOUT_CHECK_NS = 50_000_000

READY: Final = 0
CONNECTING: Final = 1
DOWN: Final = 2
TLS_HANDSHAKE: Final = 3


@dataclass(frozen=True)
class HttpWorkerConfig:
    """What one load process is told (its ``configure`` message)."""

    index: int
    processes: int
    target: Target
    connections: int
    params: dict[str, Any]
    seed: int
    timeline: Timeline
    histogram: HistogramParams
    open_loop: OpenLoopPlan | None = None  # None: the closed loop

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "processes": self.processes,
                "target": self.target.to_json(), "connections": self.connections,
                "params": self.params, "seed": self.seed, "timeline": self.timeline.to_json(),
                "histogram": self.histogram.to_json(),
                "open_loop": None if self.open_loop is None else self.open_loop.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HttpWorkerConfig:
        return cls(index=int(data["index"]), processes=int(data["processes"]),
                   target=parse_target(data["target"]), connections=int(data["connections"]),
                   params=dict(data["params"]), seed=int(data["seed"]),
                   timeline=Timeline.from_json(data["timeline"]),
                   histogram=HistogramParams.from_json(data["histogram"]),
                   open_loop=OpenLoopPlan.from_json(data.get("open_loop")))


def main(argv: Sequence[str]) -> NoReturn:
    """The load process's entry (:data:`agent.drivers.kit.child.BOOT`)."""
    child_main(argv, HttpWorker.from_config)


def read_body_file(path: str) -> bytes:
    """A ``file`` body's bytes, read once on the client host."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DriverError(KIND_CONFIG, f"body file {path}: cannot read it: {exc.strerror}") \
            from None


class HttpConnection:
    """One connection and the request it has in flight (``template`` -1: none)."""

    __slots__ = ("attempts", "fd", "handshake_deadline", "issued_ns", "out", "reader",
                 "recv_into", "retry_at", "schedule", "send", "sent_ns", "sock", "state",
                 "template")

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.fd = -1
        self.state = DOWN
        self.reader = ResponseReader()
        self.template = -1
        self.out = b""  # what the socket did not take yet
        self.sent_ns = 0  # where its latency counts from: the send, or the open loop's point
        self.issued_ns = 0  # the actual send (the timeout and the gap count from it)
        self.attempts = 0
        self.retry_at = 0
        self.handshake_deadline = 0  # perf clock: a reconnection not ready by then has failed
        self.schedule: ConnectionSchedule | None = None  # the open loop's
        self.recv_into: Callable[[bytearray], int] = _closed_recv
        self.send: Callable[[bytes], int] = _closed_send


def _busy(conn: HttpConnection) -> bool:
    """Not free to send: awaiting a response, or (re)connecting."""
    return conn.template >= 0 or conn.state != READY


def _closed_recv(buffer: bytearray) -> int:
    return 0


def _closed_send(data: bytes) -> int:
    raise ConnectionResetError


class HttpWorker:
    """Connections, templates and recorder of one load process."""

    def __init__(self, config: HttpWorkerConfig, channel: Channel) -> None:
        self.config = config
        self.channel = channel
        self.params: HttpParams = parse_params(config.params)
        target = config.target
        default_port = 443 if target.tls is not None else 80
        host = target.endpoint if target.port != default_port else target.address
        self.random = random.Random(config.seed)  # noqa: S311 (a load, not a secret)
        self.requests: list[CompiledRequest] = [
            compile_request(t, host, self.params.headers, self.params.base_path,
                            random=self.random, read_file=read_body_file)
            for t in self.params.requests]
        self.expect = [t.expect_status for t in self.params.requests]
        self.json_paths = [t.json_path for t in self.params.requests]
        self.keep_bodies = any(path is not None for path in self.json_paths)
        self.pick = picker([t.weight for t in self.params.requests], self.random.random)
        self.seq = config.index
        self.recorder = LoadRecorder(config.histogram, [r.name for r in self.requests],
                                     config.timeline)
        self.connections = [HttpConnection() for _ in range(config.connections)]
        self._by_fd: dict[int, HttpConnection] = {}
        self._timers: list[HttpConnection] = []
        self._buffer = bytearray(RECV_SIZE)
        self._view = memoryview(self._buffer)
        self._poller: Any = None
        self._spin = spin_counter.attached() or spin_counter.SpinTally()  # polling's CPU
        self._address: tuple[Any, ...] = ()
        self._family = socket.AF_INET
        self._draining = False
        self._busy_at_end: set[HttpConnection] | None = None  # not free when the grid ended
        self._tls: ssl.SSLContext | None = None
        self._server_name = server_name(target.tls or {}, target.address)
        self.open_loop = config.open_loop
        self.counters = ScheduleCounters.for_histogram(config.histogram)
        self._due: list[tuple[int, int, HttpConnection]] = []  # idle connections by point
        self._order = itertools.count()  # ties in the heap: never compare connections
        self._end = 0  # the planned end (perf clock), once the load began

    @classmethod
    def from_config(cls, config: dict[str, Any], channel: Channel) -> HttpWorker:
        return cls(HttpWorkerConfig.from_json(config), channel)

    # --- prepare ------------------------------------------------------------------------

    def prepare(self) -> int:
        """Open every connection (blocking); DriverError if the target cannot be reached."""
        target = self.config.target
        try:
            infos = socket.getaddrinfo(target.address, target.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise DriverError(KIND_UNREACHABLE, f"cannot resolve {target.address}: "
                              f"{describe_os_error(exc)}") from None
        self._family, _type, _proto, _name, self._address = infos[0]
        if target.tls is not None:
            self._tls = client_context(target.tls)
        for conn in self.connections:
            sock = socket.socket(self._family, socket.SOCK_STREAM)
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                bind_source(sock, target.source_address)
                sock.connect(self._address)
            except OSError as exc:
                sock.close()
                raise DriverError(KIND_UNREACHABLE, f"cannot connect to {target.endpoint}: "
                                  f"{describe_os_error(exc)}") from None
            sock = self._shake_hands(sock)
            sock.setblocking(False)
            self._attach(conn, sock)
            conn.state = READY
        self._poller = select_poller()
        self._poller.register(self.channel.fileno(), IN)
        for conn in self.connections:
            self._poller.register(conn.fd, IN)
        return len(self.connections)

    def _shake_hands(self, sock: socket.socket) -> socket.socket:
        """The TLS handshake of a connected blocking socket (none for plain TCP)."""
        if self._tls is None:
            return sock
        endpoint = self.config.target.endpoint
        try:
            return self._tls.wrap_socket(sock, server_hostname=self._server_name)
        except TimeoutError:
            sock.close()
            raise DriverError(KIND_UNREACHABLE,
                              f"{endpoint}: the TLS handshake timed out") from None
        except OSError as exc:  # ssl.SSLError included
            sock.close()
            raise DriverError(KIND_UNREACHABLE, f"TLS handshake with {endpoint} failed: "
                              f"{describe_tls_error(exc)}") from None

    def _attach(self, conn: HttpConnection, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock = sock
        conn.fd = sock.fileno()
        if isinstance(sock, ssl.SSLSocket):
            conn.recv_into, conn.send = tls_recv_into(sock), tls_send(sock)
        else:
            conn.recv_into, conn.send = sock.recv_into, sock.send
        conn.reader = ResponseReader(self.keep_bodies)
        conn.template = -1
        self._by_fd[conn.fd] = conn

    # --- the closed loop on the T0 grid ---------------------------------------------------

    def run_at(self, t0_ns: int) -> None:
        run_timed(self.channel, self.config.timeline, t0_ns, self)

    def begin(self, grid: IntervalGrid) -> list[int]:
        """The first requests (an open loop: those whose point is now; every connection's
        schedule starts now, staggered over the host's connections); the instant each
        ``send`` returned."""
        plan = self.open_loop
        if plan is not None:
            start = time.perf_counter_ns()
            self._end = grid.end
            period_ns = 1e9 / connection_rate(plan.rate, plan.host_connections, 1)
            for position, conn in enumerate(self.connections):
                rng = None
                if plan.arrivals == POISSON:
                    rng = random.Random(self.config.seed + position)  # noqa: S311 (a load)
                first = start + stagger(plan.first_connection + position, plan.host_connections,
                                        period_ns)
                conn.schedule = ConnectionSchedule(first, period_ns, rng)
        sent_at: list[int] = []
        for conn in self.connections:
            if conn.state == READY and self._send_or_wait(conn):
                sent_at.append(time.time_ns())
        return sent_at

    def _send_or_wait(self, conn: HttpConnection) -> bool:
        """An idle ready connection's next request: at once in a closed loop; in an open loop
        if its point came, else it waits in the heap. Whether a request went out."""
        schedule = conn.schedule
        if schedule is not None and schedule.due > time.perf_counter_ns():
            heappush(self._due, (schedule.due, next(self._order), conn))
            return False
        return self._send(conn, waited=True)  # (an open loop: its point came while it was busy)

    def _send_due(self, now: int) -> None:
        """Send every idle connection whose point came by ``now``."""
        due = self._due
        while due and due[0][0] <= now:
            point, _, conn = heappop(due)
            schedule = conn.schedule
            if (conn.state == READY and conn.template < 0 and schedule is not None
                    and schedule.due == point):
                self._send(conn)
            # otherwise a stale entry: the connection failed meanwhile (it is pushed again
            # when it is back) or already sent this point

    def _send(self, conn: HttpConnection, waited: bool = False) -> bool:
        """Send ``conn`` its next request (an open loop: its due point's); whether it went
        out (else the connection failed). ``waited``: the connection was not free at the
        point (``ScheduleCounters.record_send``)."""
        index = self.pick()
        request = self.requests[index]
        payload = request.static
        if payload is None:
            payload = request.render(self.seq, self.random.randrange(self.params.keyspace))
        self.seq += self.config.processes
        conn.template = index
        now = time.perf_counter_ns()
        conn.issued_ns = now
        schedule = conn.schedule
        point = now if schedule is None else schedule.take()
        conn.sent_ns = point
        try:
            sent = conn.send(payload)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._fail(conn)
            return False
        self.recorder.bytes_sent += sent
        if schedule is not None:
            self.counters.record_send(point, now, 1, waited)
        if sent < len(payload):  # a large body: the rest when the socket is writable
            conn.out = payload[sent:]
            self._poller.modify(conn.fd, IN | OUT)
        return True

    def _flush(self, conn: HttpConnection) -> None:
        try:
            sent = conn.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._fail(conn)
            return
        self.recorder.bytes_sent += sent
        conn.out = conn.out[sent:]
        if not conn.out:
            self._poller.modify(conn.fd, IN)

    def loop(self, grid: IntervalGrid) -> str:  # noqa: PLR0912, PLR0915
        """The event loop; ``completed`` or ``stopped``. Locals for the hot path, as the
        builtin driver's loop."""
        poll = self._poller.poll
        by_fd = self._by_fd
        control_fd = self.channel.fileno()
        perf = time.perf_counter_ns
        recorder = self.recorder
        buckets = [recorder.bucket(r.name) for r in self.requests]
        exact_below = recorder.latencies.params.exact_below  # from here: bucket_floor
        bucket_floor = recorder.latencies.params.bucket_floor
        expect = self.expect
        json_paths = self.json_paths
        buffer, view = self._buffer, self._view
        send = self._send
        open_loop = self.open_loop is not None
        spin = self._spin
        idle = 0  # an open loop's time waiting in its poll, this interval
        due = self._due
        order = self._order
        last: tuple[int, bool] | None = None
        drain_end = grid.end + self.config.timeline.drain_ns
        timeout_ns = self.params.timeout_ns
        next_check = perf() + TIMEOUT_CHECK_NS
        while True:
            now = perf()
            wake = min(grid.boundary, grid.end, next_check)
            if last is not None:
                wake = min(drain_end, next_check)
            elif due and due[0][0] < wake:
                wake = due[0][0]
            if now >= wake:
                if last is None and due and due[0][0] <= now:
                    self._send_due(now)
                if now >= next_check:
                    next_check = now + TIMEOUT_CHECK_NS
                    self._expire(now - timeout_ns)
                    self._expire_handshakes(now)
                    self._retry(now)
                if last is None:
                    if open_loop:
                        self.counters.idle_ns += idle  # (the drain's waiting is no interval's)
                        idle = 0
                    ended = grid.roll(now)
                    final = ended.pop() if grid.over else None
                    for index, complete in ended:
                        self.report_interval(index, complete=complete)
                    if final is not None:
                        last = final
                        self._draining = True
                        self._timers.clear()
                        self._busy_at_end = {c for c in self.connections if _busy(c)}
                if last is not None and (now >= drain_end or self._answered()):
                    self._drained(last)
                    return COMPLETED
                continue
            if not open_loop:
                ready = poll((wake - now) / 1e9)
            elif wake <= now:
                ready = poll(0.0)
            elif timeout := poll_timeout_s(wake, now):  # sleep if nothing is ready; counted
                if not (ready := poll(0.0)):
                    ready = poll(timeout)
                    idle += perf() - now
            else:  # an open loop's next point, too close to sleep for: poll for it (counted)
                spun = spin.total_ns
                ready, _seen = spin_counter.poll_spinning(poll, wake, spin)
                idle += spin.total_ns - spun
            for fd, events in ready:
                conn = by_fd.get(fd)
                if conn is None:
                    if fd == control_fd and stop_requested(self.channel):
                        if last is not None:
                            self.report_interval(last[0], complete=False)
                        return STOPPED
                    continue
                if conn.state != READY:
                    self._advance(conn, events)
                    continue
                if events & OUT and conn.out:
                    self._flush(conn)
                if not events & READ_EVENTS:
                    continue
                try:
                    size = conn.recv_into(buffer)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    size = 0
                if not size:
                    self._fail(conn)
                    continue
                received_ns = perf()
                recorder.bytes_received += size
                reader = conn.reader
                try:
                    reader.feed(view[:size])
                except ParseError:
                    recorder.count_error(ERROR_PROTOCOL)
                    conn.template = -1
                    self._replace(conn)
                    continue
                done = reader.done
                if not done:
                    continue
                template = conn.template
                keep_alive = True
                for status, body, keep_alive in done:  # noqa: B007 (the last one's is wanted)
                    recorder.requests += 1
                    if template < 0:  # a response nobody asked for
                        recorder.count_error(ERROR_PROTOCOL)
                        continue
                    wanted = expect[template]
                    if (wanted is None and 200 <= status < 300) or status == wanted:
                        path = json_paths[template]
                        if path is not None and not has_json_path(body, path):
                            recorder.count_error(ERROR_CHECK)
                        else:
                            latency = (received_ns - conn.sent_ns + 500) // 1000 or 1
                            if latency >= exact_below:  # an overload's: its bucket's floor
                                latency = bucket_floor(latency)
                            bucket = buckets[template]
                            bucket[latency] = bucket.get(latency, 0) + 1
                    else:
                        recorder.count_error(status_error(status, wanted) or ERROR_PROTOCOL)
                    template = -1
                done.clear()
                conn.template = -1
                if last is not None:  # draining: the loop's top sees at once whether all came
                    next_check = received_ns
                if not keep_alive:
                    self._replace(conn)
                elif last is None:
                    schedule = conn.schedule
                    if schedule is None or schedule.due <= received_ns:
                        send(conn)  # a closed loop; or an open loop's queued point, late
                    else:
                        heappush(due, (schedule.due, next(order), conn))

    # --- connections --------------------------------------------------------------------

    def _answered(self) -> bool:
        return all(conn.template < 0 for conn in self.connections)

    def _drop(self, conn: HttpConnection) -> None:
        if conn.sock is not None:
            self._by_fd.pop(conn.fd, None)
            with contextlib.suppress(OSError, ValueError):
                self._poller.unregister(conn.fd)
            conn.sock.close()
        conn.sock, conn.fd, conn.state, conn.out = None, -1, DOWN, b""
        conn.recv_into, conn.send = _closed_recv, _closed_send

    def _fail(self, conn: HttpConnection) -> None:
        """The connection broke: its request in flight (if any) is a ``connection`` error,
        and so is a failed connection attempt (TLS handshake included)."""
        if conn.template >= 0 or conn.state in (CONNECTING, TLS_HANDSHAKE):
            self.recorder.count_error(ERROR_CONNECTION)
        conn.template = -1
        self._drop(conn)
        self._schedule(conn)

    def _replace(self, conn: HttpConnection) -> None:
        """Close ``conn`` and open another at once (the server closed it, or it is unusable)."""
        self._drop(conn)
        conn.attempts = 0
        self._schedule(conn)

    def _schedule(self, conn: HttpConnection) -> None:
        if self._draining:
            return
        delay = RECONNECT_DELAYS_S[min(conn.attempts, len(RECONNECT_DELAYS_S) - 1)]
        conn.attempts += 1
        conn.retry_at = time.perf_counter_ns() + int(delay * 1e9)
        if delay == 0:
            self._connect(conn)
        else:
            self._timers.append(conn)

    def _retry(self, now: int) -> None:
        due = [conn for conn in self._timers if conn.retry_at <= now]
        for conn in due:
            self._timers.remove(conn)
            self._connect(conn)

    def _connect(self, conn: HttpConnection) -> None:
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            bind_source(sock, self.config.target.source_address)
            code = sock.connect_ex(self._address)
        except OSError:
            code = errno.EADDRNOTAVAIL
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            sock.close()
            self.recorder.count_error(ERROR_CONNECTION)
            self._schedule(conn)
            return
        self._attach(conn, sock)
        conn.state = CONNECTING
        conn.handshake_deadline = time.perf_counter_ns() + int(CONNECT_TIMEOUT * 1e9)
        self._poller.register(conn.fd, IN | OUT)

    def _advance(self, conn: HttpConnection, events: int) -> None:
        """A connecting connection has news: connected (then TLS, if any), or failed."""
        sock = conn.sock
        if sock is None:
            return
        if conn.state == TLS_HANDSHAKE:
            self._tls_step(conn)
            return
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or events & (ERR | HUP):
            self._fail(conn)
            return
        if self._tls is not None:
            self._attach(conn, self._tls.wrap_socket(
                sock, server_hostname=self._server_name, do_handshake_on_connect=False,
            ))  # the same descriptor: the poller's registration stands
            conn.state = TLS_HANDSHAKE
            self._tls_step(conn)
            return
        self._ready(conn)

    def _tls_step(self, conn: HttpConnection) -> None:
        """Advance a non-blocking TLS handshake; ready when it is done."""
        step = handshake_step(conn.sock)
        if step == HANDSHAKE_READ:
            self._poller.modify(conn.fd, IN)
        elif step == HANDSHAKE_WRITE:
            self._poller.modify(conn.fd, IN | OUT)
        elif step == HANDSHAKE_FAILED:  # a refused certificate is a failed attempt
            self._fail(conn)
        else:
            self._ready(conn)

    def _ready(self, conn: HttpConnection) -> None:
        conn.state = READY
        conn.attempts = 0
        self._poller.modify(conn.fd, IN)
        if not self._draining:
            self._send_or_wait(conn)

    def _expire(self, sent_before: int) -> None:
        """Requests sent before ``sent_before`` are ``timeout`` errors; their connections
        are replaced (a late response would be read as the next request's)."""
        for conn in self.connections:
            if conn.template >= 0 and conn.issued_ns < sent_before:
                self.recorder.count_error(ERROR_TIMEOUT)
                conn.template = -1
                self._replace(conn)

    def _expire_handshakes(self, now: int) -> None:
        """Every reconnection still connecting or shaking hands (TLS) at its deadline has
        failed (:meth:`_fail`: a ``connection`` error, retried after the back-off)."""
        for conn in self.connections:
            if conn.state in (CONNECTING, TLS_HANDSHAKE) and now >= conn.handshake_deadline:
                self._fail(conn)

    # --- intervals ----------------------------------------------------------------------

    def _drained(self, last: tuple[int, bool]) -> None:
        unanswered = sum(1 for conn in self.connections if conn.template >= 0)
        if unanswered:
            self.recorder.count_error(ERROR_TIMEOUT, unanswered)
        self.report_interval(last[0], complete=last[1])

    def report_interval(self, index: int, *, complete: bool) -> None:
        now = time.perf_counter_ns()
        for conn in self.connections:
            if conn.template >= 0:
                self.recorder.note_gap(now - conn.issued_ns)
        lateness = None
        if self.open_loop is not None:
            at = accounting_instant(now, self._end, self.config.timeline, index)
            ended = self._busy_at_end  # the last interval: read as the grid ended
            self.recorder.open_loop, lateness = schedule_counts(
                self.counters, [(c.schedule, _busy(c) if ended is None else c in ended)
                                for c in self.connections if c.schedule is not None], at, 1,
                self.config.timeline.interval_ns)
        data = self.recorder.packing(
            self.recorder.take(index, complete=complete, lateness=lateness)).finish()
        self.channel.send({"type": "interval_counts", "interval": data.to_json()})

    def close(self) -> None:
        for conn in self.connections:
            if conn.sock is not None:
                conn.sock.close()
                conn.sock = None
        if self._poller is not None:
            with contextlib.suppress(OSError):
                self._poller.close()


def select_poller() -> Any:
    """``epoll`` where there is one, ``poll`` elsewhere."""
    return select.epoll() if hasattr(select, "epoll") else PollAdapter()
