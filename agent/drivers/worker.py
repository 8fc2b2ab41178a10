"""One load process of the builtin driver: N connections to the target, one closed loop.

The agent starts it as ``python -I -c BOOT FD PARENT_PID`` (:func:`boot_argv`): a fresh
interpreter (not a fork of the multithreaded agent), with the agent's ``sys.path`` given on the
command line, talking to the agent over the Unix socket ``FD`` (:mod:`agent.drivers.channel`).
It asks the kernel to kill it if the agent thread that started it dies (``PR_SET_PDEATHSIG``),
and stays in the agent's process group, so nothing outlives the agent.

Its conversation with the agent::

    configure {config}  ->  ready {connections} | error {kind, message}
    start {t0_ns}       ->  started {first_send_ns}, interval {...} per interval,
                            finished {stopped_ns, reason}
    stop                ->  (cuts the load) interval {complete: false}, finished

The loop (:meth:`Worker.run_closed_loop`) is one ``epoll`` over raw non-blocking sockets, a
``hiredis.Reader`` per connection: each connection sends a batch of ``pipeline`` requests and
sends the next as soon as every reply of the batch arrived. A reply's latency is the time from
its batch's send to the ``recv`` that brought it (``perf_counter_ns``); replies read together
share it, so they are counted together. Error replies are counted by type and left out of the
histograms; a connection that fails counts its lost requests as ``connection`` errors and
reconnects (authenticating again) while the others go on.

Intervals are aligned on T0 in the agent's clock; the loop converts their boundaries once to
``perf_counter_ns`` and rolls the :class:`~agent.histograms.IntervalRecorder` when one passes
(replies handled in the poll round that crosses a boundary still count for the interval that
ends: a few microseconds of slack).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import hiredis

from agent.drivers.channel import Channel, ChannelClosed
from agent.drivers.errors import (
    KIND_AUTH,
    KIND_CONFIG,
    KIND_INTERNAL,
    KIND_SERVER,
    KIND_UNREACHABLE,
    DriverError,
)
from agent.drivers.intervals import IntervalData
from agent.drivers.resp import Batch, RequestMix, auth_command, encode_command, error_type
from agent.drivers.spec import Target, Timeline, parse_target
from agent.histograms import HistogramParams, IntervalRecorder

# --- tunables (module level so tests may shrink them) -----------------------------------------

#: Time to open and authenticate one connection during prepare.
CONNECT_TIMEOUT = 5.0
#: Time the server has to answer one preload batch.
PRELOAD_REPLY_TIMEOUT = 60.0
#: SET commands per preload batch.
PRELOAD_BATCH = 1000
#: Sleep until this long before T0, then spin on the clock (a sleep wakes too late).
SPIN_BEFORE_NS = 2_000_000
#: A load process that starts this fraction of an interval late leaves the interval incomplete.
START_TOLERANCE = 0.01
#: Waits between reconnection attempts of one connection (the last one repeats).
RECONNECT_DELAYS_S: tuple[float, ...] = (0.0, 0.01, 0.1, 0.5, 1.0)
#: Size of the receive buffer (``recv_into`` a reused buffer: no allocation per read).
RECV_SIZE = 262144

ERROR_CONNECTION: Final = "connection"

# epoll event bits (the same values as poll's on Linux).
_IN: Final = select.EPOLLIN if hasattr(select, "EPOLLIN") else 1
_OUT: Final = select.EPOLLOUT if hasattr(select, "EPOLLOUT") else 4
_ERR: Final = select.EPOLLERR if hasattr(select, "EPOLLERR") else 8
_HUP: Final = select.EPOLLHUP if hasattr(select, "EPOLLHUP") else 16
_READ_EVENTS: Final = _IN | _ERR | _HUP

_PR_SET_PDEATHSIG: Final = 1

# Connection states.
READY: Final = 0
CONNECTING: Final = 1
AUTHENTICATING: Final = 2
DOWN: Final = 3

BOOT: Final = (
    "import json, sys; sys.path[:0] = [p for p in json.loads(sys.argv[1]) if p not in sys.path]; "
    "from agent.drivers.worker import main; main(sys.argv[2:])"
)


def boot_argv(fd: int) -> list[str]:
    """The command that starts a load process on channel ``fd``, in this interpreter."""
    paths = [path for path in sys.path if path]
    return [sys.executable, "-I", "-c", BOOT, json.dumps(paths), str(fd), str(os.getpid())]


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerConfig:
    """What one load process is told to do (sent as its ``configure`` message)."""

    index: int
    target: Target
    connections: int
    pipeline: int
    set_ratio: float
    keyspace: int
    value_size: int
    seed: int
    preload: tuple[int, int] | None
    timeline: Timeline
    histogram: HistogramParams

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "target": self.target.to_json(),
            "connections": self.connections,
            "pipeline": self.pipeline,
            "set_ratio": self.set_ratio,
            "keyspace": self.keyspace,
            "value_size": self.value_size,
            "seed": self.seed,
            "preload": list(self.preload) if self.preload is not None else None,
            "timeline": self.timeline.to_json(),
            "histogram": self.histogram.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerConfig:
        preload = data["preload"]
        return cls(
            index=int(data["index"]),
            target=parse_target(data["target"]),
            connections=int(data["connections"]),
            pipeline=int(data["pipeline"]),
            set_ratio=float(data["set_ratio"]),
            keyspace=int(data["keyspace"]),
            value_size=int(data["value_size"]),
            seed=int(data["seed"]),
            preload=(int(preload[0]), int(preload[1])) if preload is not None else None,
            timeline=Timeline.from_json(data["timeline"]),
            histogram=HistogramParams.from_json(data["histogram"]),
        )


# --- entry point ------------------------------------------------------------------------------


def main(argv: Sequence[str]) -> NoReturn:
    """``BOOT``'s entry: argv is ``FD PARENT_PID``."""
    fd, parent = int(argv[0]), int(argv[1])
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the agent's to handle
    channel = Channel(socket.socket(fileno=fd))
    status = 1
    try:
        status = serve(channel)
    except ChannelClosed:
        status = 0  # the agent went away or closed us: nothing left to tell anyone
    except Exception as exc:  # noqa: BLE001 (a bug: say it, then leave)
        traceback.print_exc()
        with contextlib.suppress(ChannelClosed):
            channel.send({"type": "error", "kind": KIND_INTERNAL, "message": _describe(exc)})
    finally:
        sys.stderr.flush()
    os._exit(status)


def die_with_parent(parent: int) -> None:
    """Ask Linux for SIGKILL when the agent thread that started us ends; leave at once if the
    agent is already gone (it may have died before the request took effect)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def serve(channel: Channel) -> int:
    """Configure, prepare, wait for start (or stop), run; the process exit status."""
    message = channel.receive()
    if message["type"] != "configure":
        raise RuntimeError(f"expected configure, got {message['type']}")
    config = WorkerConfig.from_json(message["config"])
    worker = Worker(config, channel)
    try:
        worker.prepare()
    except DriverError as exc:
        worker.close()
        channel.send({"type": "error", "kind": exc.kind, "message": exc.message})
        return 0
    channel.send({"type": "ready", "connections": len(worker.connections)})
    gc.collect()
    gc.freeze()  # the request pool and the rest of the set-up stay out of collections
    while True:
        message = channel.receive()
        if message["type"] == "start":
            gc.disable()  # the loop makes no reference cycles; a collection is a pause
            worker.run_closed_loop(int(message["t0_ns"]))
            worker.close()
            return 0
        if message["type"] == "stop":
            worker.close()
            channel.send({"type": "finished", "stopped_ns": time.time_ns(), "reason": "stopped"})
            return 0


# --- connections ------------------------------------------------------------------------------


class Connection:
    """One connection to the target and the batch it has in flight."""

    __slots__ = (
        "attempts",
        "batch",
        "fd",
        "feed",
        "gets",
        "out",
        "received",
        "recv_into",
        "retry_at",
        "send",
        "sent_ns",
        "sock",
        "state",
    )

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.fd = -1
        self.state = DOWN
        self.batch: Batch | None = None
        self.received = 0  # replies of the batch received so far
        self.sent_ns = 0
        self.out = b""  # bytes of the batch still to send
        self.attempts = 0  # failed connection attempts in a row
        self.retry_at = 0
        self.recv_into: Callable[[bytearray], int] = _closed_recv
        self.send: Callable[[bytes], int] = _closed_send
        self.gets: Callable[[], Any] = _nothing
        self.feed: Callable[..., None] = _ignore

    def attach(self, sock: socket.socket) -> None:
        reader = hiredis.Reader()
        self.sock = sock
        self.fd = sock.fileno()
        self.recv_into = sock.recv_into
        self.send = sock.send
        self.gets = reader.gets
        self.feed = reader.feed
        self.batch = None
        self.received = 0
        self.out = b""

    def detach(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock = None
        self.fd = -1
        self.state = DOWN
        self.recv_into = _closed_recv
        self.send = _closed_send
        self.gets = _nothing
        self.feed = _ignore
        self.batch = None
        self.received = 0
        self.out = b""

    @property
    def in_flight(self) -> int:
        if self.batch is None:
            return 0
        return len(self.batch.kinds) - self.received


def _closed_recv(_buffer: bytearray) -> int:
    raise OSError(errno.EBADF, "connection closed")


def _closed_send(_data: bytes) -> int:
    raise OSError(errno.EBADF, "connection closed")


def _nothing() -> Any:
    return False


def _ignore(_data: bytearray, _offset: int, _length: int) -> None:
    return None


# --- the load process -------------------------------------------------------------------------


class Worker:
    """Connections, request mix, recorder and counters of one load process."""

    def __init__(self, config: WorkerConfig, channel: Channel) -> None:
        self.config = config
        self.channel = channel
        self.target = config.target
        self.mix = RequestMix(
            keyspace=config.keyspace,
            set_ratio=config.set_ratio,
            value_size=config.value_size,
            pipeline=config.pipeline,
            seed=config.seed,
        )
        self.recorder = IntervalRecorder(config.histogram, RequestMix.commands)
        self.connections = [Connection() for _ in range(config.connections)]
        self._auth = auth_command(self.target.username, self.target.password)
        # What a new connection sends during prepare, and the commands it expects replies to.
        self.handshake = (self._auth or b"") + encode_command("PING")
        self._handshake_commands = ("PING",) if self._auth is None else ("AUTH", "PING")
        self._address: tuple[Any, ...] = ()
        self._family = socket.AF_INET
        self._poller: Any = None
        self._by_fd: dict[int, Connection] = {}
        self._timers: list[Connection] = []
        self._index = 0  # the interval in progress
        self._boundary = self._end = 0  # its end, and the planned end (perf clock)
        self._first_complete = True
        self._buffer = bytearray(RECV_SIZE)
        # Counters of the current interval (errors and latencies live in their own dicts).
        self.requests = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.errors: dict[str, int] = {}

    # --- prepare ------------------------------------------------------------------------

    def prepare(self) -> None:
        """Open and authenticate every connection, preload if asked; DriverError if the
        target cannot be used."""
        self._resolve()
        for conn in self.connections:
            sock = self._open_blocking()
            conn.attach(sock)
            conn.state = READY
        if self.config.preload is not None:
            first, end = self.config.preload
            self._preload(self.connections[0], first, end)
        for conn in self.connections:
            if conn.sock is not None:
                conn.sock.setblocking(False)

    def _resolve(self) -> None:
        target = self.target
        try:
            infos = socket.getaddrinfo(target.address, target.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise DriverError(
                KIND_UNREACHABLE, f"cannot resolve {target.address}: {_reason(exc)}"
            ) from None
        family, _type, _proto, _name, address = infos[0]
        self._family = family
        self._address = address

    def _open_blocking(self) -> socket.socket:
        endpoint = self.target.endpoint
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                bind_source(sock, self.target.source_address)
                sock.connect(self._address)
            except OSError as exc:
                raise DriverError(
                    KIND_UNREACHABLE, f"cannot connect to {endpoint}: {_reason(exc)}"
                ) from None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            commands = self._handshake_commands
            replies = _exchange(sock, self.handshake, len(commands), endpoint)
            for reply, command in zip(replies, commands, strict=True):
                if isinstance(reply, hiredis.ReplyError):
                    raise _handshake_error(endpoint, command, str(reply))
        except BaseException:
            sock.close()
            raise
        return sock

    def _preload(self, conn: Connection, first: int, end: int) -> None:
        sock = conn.sock
        if sock is None:
            raise DriverError(KIND_INTERNAL, "preload without a connection")
        sock.settimeout(PRELOAD_REPLY_TIMEOUT)
        endpoint = self.target.endpoint
        for batch_start, payload in zip(
            range(first, end, PRELOAD_BATCH),
            self.mix.preload_batches(first, end, PRELOAD_BATCH),
            strict=True,
        ):
            count = min(PRELOAD_BATCH, end - batch_start)
            for reply in _exchange(sock, payload, count, endpoint):
                if isinstance(reply, hiredis.ReplyError):
                    raise DriverError(KIND_SERVER, f"preloading keys on {endpoint} failed: {reply}")

    # --- the closed loop ----------------------------------------------------------------

    def run_closed_loop(self, t0_ns: int) -> None:
        """Wait for T0, run the closed loop until the end of the measure phase or a stop,
        reporting every interval; then report ``finished``."""
        timeline = self.config.timeline
        interval_ns = timeline.interval_ns
        if not self._wait_until(t0_ns - SPIN_BEFORE_NS):
            self._finish("stopped")
            return
        while time.time_ns() < t0_ns:
            pass
        first_send_ns = time.time_ns()
        perf0 = time.perf_counter_ns() - (first_send_ns - t0_ns)  # T0 on the perf clock
        index = (first_send_ns - t0_ns) // interval_ns
        if index >= timeline.intervals:
            self._finish("completed")  # started after the planned end: nothing to do
            return
        # Late by more than the tolerance: the first interval is not wholly covered.
        late = first_send_ns - (t0_ns + index * interval_ns)
        self._first_complete = late <= interval_ns * START_TOLERANCE
        self._index = index
        self._boundary = perf0 + (index + 1) * interval_ns
        self._end = perf0 + timeline.intervals * interval_ns
        self._open_poller()
        for conn in self.connections:
            if conn.state == READY:
                self._send_batch(conn, time.perf_counter_ns())
        self.channel.send({"type": "started", "first_send_ns": first_send_ns})
        reason = self._loop()
        self._finish(reason)

    def _loop(self) -> str:  # noqa: PLR0912, PLR0915 (the hot loop stays in one frame)
        """The event loop; returns why it ended: ``completed`` or ``stopped``."""
        poll = self._poller.poll
        by_fd = self._by_fd
        control_fd = self.channel.fileno()
        perf = time.perf_counter_ns
        next_batch = self.mix.next_batch
        buckets = [self.recorder.bucket(name) for name in RequestMix.commands]
        reply_error = hiredis.ReplyError
        buffer = self._buffer  # one receive buffer: hiredis copies what it is fed
        requests = bytes_in = bytes_out = 0
        wake = self._wake()
        while True:
            now = perf()
            if now >= wake:
                self.requests += requests
                self.bytes_received += bytes_in
                self.bytes_sent += bytes_out
                requests = bytes_in = bytes_out = 0
                if self._housekeeping(now):
                    return "completed"
                wake = self._wake()
            timeout = (wake - now) / 1e9
            if timeout < 0:  # (never, by construction; a negative timeout would block forever)
                timeout = 0.0
            for fd, events in poll(timeout):
                conn = by_fd.get(fd)
                if conn is None:
                    if fd == control_fd:
                        self.requests += requests
                        self.bytes_received += bytes_in
                        self.bytes_sent += bytes_out
                        requests = bytes_in = bytes_out = 0
                        if self._on_control():
                            return "stopped"
                    continue
                if conn.state:  # not READY: connecting or authenticating
                    self._advance(conn, events)
                    wake = self._wake()
                    continue
                if events & _OUT and conn.out:
                    self._flush(conn)
                if not events & _READ_EVENTS:
                    continue
                try:
                    size = conn.recv_into(buffer)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    self._fail(conn)
                    wake = self._wake()
                    continue
                if not size:
                    self._fail(conn)
                    wake = self._wake()
                    continue
                received_ns = perf()
                bytes_in += size
                conn.feed(buffer, 0, size)
                gets = conn.gets
                first = done = conn.received
                bad: list[tuple[int, Any]] | None = None
                while (reply := gets()) is not False:
                    if reply.__class__ is reply_error:
                        if bad is None:
                            bad = [(done, reply)]
                        else:
                            bad.append((done, reply))
                    done += 1
                if done == first:
                    continue
                batch = conn.batch
                if batch is None:  # replies nobody asked for: the server is confused
                    self._fail(conn)
                    wake = self._wake()
                    continue
                requests += done - first
                latency = (received_ns - conn.sent_ns) // 1000 or 1
                wanted = len(batch.kinds)
                if bad is None and first == 0 and done == wanted:
                    counts: Sequence[int] = batch.counts
                else:
                    counts = self._count(batch, first, done, bad)
                for kind, count in enumerate(counts):
                    if count:
                        bucket = buckets[kind]
                        bucket[latency] = bucket.get(latency, 0) + count
                if done < wanted:
                    conn.received = done
                    continue
                # The whole batch is answered: send the next one (closed loop).
                batch = next_batch()
                conn.batch = batch
                conn.received = 0
                payload = batch.payload
                conn.sent_ns = perf()
                try:
                    sent = conn.send(payload)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    self._fail(conn)
                    wake = self._wake()
                    continue
                bytes_out += sent
                if sent < len(payload):
                    self._pend(conn, payload[sent:])

    def _count(
        self, batch: Batch, first: int, done: int, bad: list[tuple[int, Any]] | None
    ) -> list[int]:
        """Replies per command among replies ``[first, done)`` of ``batch``, error replies
        left out (and counted by type)."""
        kinds = batch.kinds[first:done]
        counts = [kinds.count(kind) for kind in range(len(batch.counts))]
        for position, reply in bad or ():
            counts[batch.kinds[position]] -= 1
            kind = error_type(str(reply))
            self.errors[kind] = self.errors.get(kind, 0) + 1
        return counts

    def _send_batch(self, conn: Connection, now: int) -> None:
        batch = self.mix.next_batch()
        conn.batch = batch
        conn.received = 0
        conn.sent_ns = now
        try:
            sent = conn.send(batch.payload)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._fail(conn)
            return
        self.bytes_sent += sent
        if sent < len(batch.payload):
            self._pend(conn, batch.payload[sent:])

    def _pend(self, conn: Connection, rest: bytes) -> None:
        """Keep what the socket did not take; send it when it becomes writable."""
        conn.out = rest
        self._poller.modify(conn.fd, _IN | _OUT)

    def _flush(self, conn: Connection) -> None:
        try:
            sent = conn.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._fail(conn)
            return
        self.bytes_sent += sent
        conn.out = conn.out[sent:]
        if not conn.out:
            self._poller.modify(conn.fd, _IN)

    # --- intervals ----------------------------------------------------------------------

    def _wake(self) -> int:
        """The next perf-clock instant the loop must act at: a boundary or a reconnection."""
        wake: int = min(self._boundary, self._end)
        for conn in self._timers:
            wake = min(wake, conn.retry_at)
        return wake

    def _housekeeping(self, now: int) -> bool:
        """Roll every interval that ended, fire due reconnections; True at the planned end."""
        interval_ns = self.config.timeline.interval_ns
        while now >= self._boundary:
            self._report_interval(self._index, complete=self._first_complete)
            self._first_complete = True
            self._index += 1
            self._boundary += interval_ns
            if self._index >= self.config.timeline.intervals:
                return True
        if self._timers:
            due = [conn for conn in self._timers if conn.retry_at <= now]
            for conn in due:
                self._timers.remove(conn)
                self._connect(conn)
        return False

    def _report_interval(self, index: int, *, complete: bool) -> None:
        recorded = self.recorder.roll(index)
        errors, self.errors = self.errors, {}
        data = IntervalData(
            index=index,
            phase=self.config.timeline.phase(index),
            complete=complete,
            commands=recorded.commands,
            requests=self.requests,
            errors=errors,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
            overflow=recorded.overflow,
        )
        self.requests = self.bytes_sent = self.bytes_received = 0
        self.channel.send({"type": "interval", "interval": data.to_json()})

    def _on_control(self) -> bool:
        """Handle the agent's messages; True to stop now."""
        try:
            self.channel.read_available()
            messages = self.channel.take()
        except ChannelClosed:
            return True
        return any(message["type"] == "stop" for message in messages)

    def _finish(self, reason: str) -> None:
        if reason == "stopped" and self._poller is not None:
            self._report_interval(self._index, complete=False)
        self.channel.send({"type": "finished", "stopped_ns": time.time_ns(), "reason": reason})

    def _wait_until(self, wall_ns: int) -> bool:
        """Sleep until ``wall_ns`` (agent clock) unless the agent says stop; False if it did."""
        while True:
            if any(message["type"] == "stop" for message in self.channel.take()):
                return False
            remaining = wall_ns - time.time_ns()
            if remaining <= 0:
                return True
            readable, _, _ = select.select([self.channel.sock], [], [], remaining / 1e9)
            if readable:
                try:
                    self.channel.read_available()
                except ChannelClosed:
                    return False

    # --- connection failures and reconnection --------------------------------------------

    def _open_poller(self) -> None:
        self._poller = select.epoll() if hasattr(select, "epoll") else _PollAdapter()
        self._poller.register(self.channel.fileno(), _IN)
        for conn in self.connections:
            if conn.state == READY:
                self._by_fd[conn.fd] = conn
                self._poller.register(conn.fd, _IN)

    def _fail(self, conn: Connection) -> None:
        """The connection broke: count its lost requests, drop it, reconnect."""
        was_ready = conn.state == READY
        lost = max(1, conn.in_flight) if was_ready else 1
        self.errors[ERROR_CONNECTION] = self.errors.get(ERROR_CONNECTION, 0) + lost
        self._drop(conn)
        if was_ready:
            conn.attempts = 0
        self._schedule(conn)

    def _drop(self, conn: Connection) -> None:
        if conn.fd >= 0:
            self._by_fd.pop(conn.fd, None)
            with contextlib.suppress(OSError, ValueError):
                self._poller.unregister(conn.fd)
        conn.detach()

    def _schedule(self, conn: Connection) -> None:
        delay = RECONNECT_DELAYS_S[min(conn.attempts, len(RECONNECT_DELAYS_S) - 1)]
        conn.attempts += 1
        conn.retry_at = time.perf_counter_ns() + int(delay * 1e9)
        self._timers.append(conn)

    def _connect(self, conn: Connection) -> None:
        """Start a non-blocking connection; the loop finishes it (:meth:`_advance`)."""
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            bind_source(sock, self.target.source_address)
        except OSError:
            code = errno.EADDRNOTAVAIL
        else:
            code = sock.connect_ex(self._address)
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            sock.close()
            self.errors[ERROR_CONNECTION] = self.errors.get(ERROR_CONNECTION, 0) + 1
            self._schedule(conn)
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.attach(sock)
        conn.state = CONNECTING
        self._by_fd[conn.fd] = conn
        self._poller.register(conn.fd, _OUT | _IN)

    def _advance(self, conn: Connection, events: int) -> None:
        """A connecting or authenticating connection has news."""
        sock = conn.sock
        if sock is None:
            return
        if conn.state == CONNECTING:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code or events & (_ERR | _HUP):
                self._fail(conn)
                return
            if self._auth is None:
                self._ready(conn)
                return
            try:
                sock.send(self._auth)  # tiny: the socket buffer of a new connection holds it
            except OSError:
                self._fail(conn)
                return
            conn.state = AUTHENTICATING
            self._poller.modify(conn.fd, _IN)
            return
        try:
            size = conn.recv_into(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._fail(conn)
            return
        if not size:
            self._fail(conn)
            return
        conn.feed(self._buffer, 0, size)
        reply = conn.gets()
        if reply is False:
            return
        if isinstance(reply, hiredis.ReplyError):
            kind = error_type(str(reply))
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self._drop(conn)
            self._schedule(conn)
            return
        self._ready(conn)

    def _ready(self, conn: Connection) -> None:
        conn.state = READY
        conn.attempts = 0
        self._poller.modify(conn.fd, _IN)
        self._send_batch(conn, time.perf_counter_ns())

    def close(self) -> None:
        for conn in self.connections:
            conn.detach()
        if self._poller is not None:
            with contextlib.suppress(OSError):
                self._poller.close()


class _PollAdapter:
    """``select.poll`` with epoll's timeout in seconds (for systems without epoll)."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self.register = self._poll.register
        self.modify = self._poll.modify
        self.unregister = self._poll.unregister

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        return self._poll.poll(max(0.0, timeout) * 1000)

    def close(self) -> None:
        return None


# --- helpers ----------------------------------------------------------------------------------


def _exchange(sock: socket.socket, payload: bytes, replies: int, endpoint: str) -> list[Any]:
    """Send ``payload`` on a blocking socket and read ``replies`` replies."""
    reader = hiredis.Reader()
    try:
        sock.sendall(payload)
        answers: list[Any] = []
        while len(answers) < replies:
            data = sock.recv(RECV_SIZE)
            if not data:
                raise DriverError(
                    KIND_UNREACHABLE, f"{endpoint} closed the connection before answering"
                )
            reader.feed(data)
            while len(answers) < replies and (reply := reader.gets()) is not False:
                answers.append(reply)
    except TimeoutError:
        raise DriverError(KIND_UNREACHABLE, f"{endpoint} did not answer in time") from None
    except OSError as exc:
        raise DriverError(
            KIND_UNREACHABLE, f"connection to {endpoint} failed: {_reason(exc)}"
        ) from None
    return answers


def _handshake_error(endpoint: str, command: str, message: str) -> DriverError:
    kind = error_type(message)
    if command == "AUTH" or kind in ("WRONGPASS", "NOPERM"):
        return DriverError(KIND_AUTH, f"cannot authenticate to {endpoint}: {message}")
    if kind == "NOAUTH":
        return DriverError(KIND_AUTH, f"{endpoint} requires a password: {message}")
    return DriverError(KIND_SERVER, f"{endpoint} refused a new connection: {message}")


def bind_source(sock: socket.socket, source_address: str | None) -> None:
    """Bind ``sock`` to the load's source address (any free port) before it connects."""
    if source_address is not None:
        sock.bind((source_address, 0))


def check_source_address(source_address: str | None) -> None:
    """``DriverError("config")`` unless ``source_address`` is an address of this host.

    Checked once at prepare, so a wrong inventory value is one line naming it rather than
    every connection failing.
    """
    if source_address is None:
        return
    try:
        infos = socket.getaddrinfo(source_address, 0, type=socket.SOCK_STREAM,
                                   flags=socket.AI_NUMERICHOST)
        family, _type, _proto, _name, address = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind(address)
    except OSError as exc:
        raise DriverError(
            KIND_CONFIG,
            f"load_source_address {source_address} is not an address of this host: "
            f"{_reason(exc)}",
        ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
