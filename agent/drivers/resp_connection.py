"""Connections of a RESP load process: blocking at prepare, non-blocking (``epoll``) while the
load runs, with reconnection.

A new connection sends its handshake (:mod:`agent.drivers.resp_handshake`: AUTH, ``HELLO 3``,
``SELECT``), over TLS when the target has ``tls`` (:mod:`agent.drivers.resp_tls`).
A connection that fails during the load counts its lost requests as ``connection`` errors and
reconnects (TLS and handshake again) while the others go on; a reconnection that is not ready
within :data:`CONNECT_TIMEOUT` (a server that accepts but never finishes the TLS handshake or
never answers AUTH/HELLO/SELECT) is a failed attempt like a refused one.
:class:`RespConnections` keeps the poller, the reconnection timers and that state machine
(connecting, TLS handshake, authenticating, ready);
the load loop (:class:`agent.drivers.worker.Worker`) only sends and reads.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import hiredis

from agent.drivers.cluster_slots import SlotMap, from_shards, from_slots
from agent.drivers.errors import KIND_AUTH, KIND_CONFIG, KIND_SERVER, KIND_UNREACHABLE, DriverError
from agent.drivers.kit.recorder import LoadRecorder
from agent.drivers.resp import Batch, encode_command, error_type
from agent.drivers.resp_handshake import handshake
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
from agent.drivers.spec import Target

# --- tunables (module level so tests may shrink them) -----------------------------------------

#: Time to open and authenticate one connection: at prepare (blocking), and during the load the
#: deadline of a reconnection's connect, TLS handshake and AUTH/HELLO/SELECT together (the
#: builtin driver's inventory has no connect timeout; the reply timeout is not used for it, as
#: it may be 1 ms, shorter than a TLS handshake, and no reconnection would ever succeed).
CONNECT_TIMEOUT = 5.0
#: Waits between reconnection attempts of one connection (the last one repeats).
RECONNECT_DELAYS_S: tuple[float, ...] = (0.0, 0.01, 0.1, 0.5, 1.0)
#: Size of the receive buffer (``recv_into`` a reused buffer: no allocation per read).
RECV_SIZE = 262144

ERROR_CONNECTION: Final = "connection"
#: The error type of a request that got no reply in time: the reply timeout, or still
#: unanswered when the end-of-phase drain limit passed.
ERROR_TIMEOUT: Final = "timeout"
#: A deadline that never comes (no reply timeout, nothing connecting).
NEVER: Final = 1 << 126

# epoll event bits (the same values as poll's on Linux).
IN: Final = select.EPOLLIN if hasattr(select, "EPOLLIN") else 1
OUT: Final = select.EPOLLOUT if hasattr(select, "EPOLLOUT") else 4
ERR: Final = select.EPOLLERR if hasattr(select, "EPOLLERR") else 8
HUP: Final = select.EPOLLHUP if hasattr(select, "EPOLLHUP") else 16
READ_EVENTS: Final = IN | ERR | HUP

# Connection states.
READY: Final = 0
CONNECTING: Final = 1
AUTHENTICATING: Final = 2
DOWN: Final = 3
TLS_HANDSHAKE: Final = 4


#: Error replies read so far by the connections of this process, one count in a list: a load
#: loop keeps the count it saw last, so one compare per read tells it whether the read brought
#: an error reply, instead of a check of every reply in Python (the replies of a read are
#: taken by ``iter(gets, False)``, in C).
ERROR_REPLIES: Final[list[int]] = [0]


class _NoReply:
    """What a connection's reader answers when it holds no whole reply (hiredis's
    ``notEnoughData``, ``False`` by default): an object no reply equals, so the loops'
    ``iter(conn.gets, NO_REPLY)`` cannot stop at a reply of ``0`` or RESP3's false, as it would
    with ``False`` (``0 == False``)."""

    __slots__ = ()


NO_REPLY: Final = _NoReply()


def _error_reply(message: Any) -> hiredis.ReplyError:
    """hiredis's error reply, counted (the readers' ``replyError``)."""
    ERROR_REPLIES[0] += 1
    return hiredis.ReplyError(message)


class Connection:
    """One connection to the target and the batch it has in flight."""

    __slots__ = (
        "address",
        "attempts",
        "batch",
        "fd",
        "feed",
        "gets",
        "handshake_deadline",
        "has_data",
        "last_reply_ns",
        "next_batch",
        "node",
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
        self.last_reply_ns = 0  # perf clock: the last reply read (or the first send)
        self.out = b""  # bytes of the batch still to send
        self.attempts = 0  # failed connection attempts in a row
        self.retry_at = 0
        self.handshake_deadline = 0  # perf clock: a reconnection not ready by then has failed
        self.address: tuple[Any, ...] = ()  # where it connects (a cluster: its primary's)
        self.node = 0  # its primary's index in the cluster's slot map (0 for one server)
        self.next_batch: Callable[[], Batch] = _no_batch  # the load sets its request stream
        self.recv_into: Callable[[bytearray], int] = _closed_recv
        self.send: Callable[[bytes], int] = _closed_send
        self.gets: Callable[[], Any] = _nothing
        self.feed: Callable[..., None] = _ignore
        self.has_data: Callable[[], bool] = _no_data  # bytes fed and not parsed yet

    def attach(self, sock: socket.socket) -> None:
        reader = hiredis.Reader(replyError=_error_reply, notEnoughData=NO_REPLY)
        self.sock = sock
        self.fd = sock.fileno()
        if isinstance(sock, ssl.SSLSocket):
            self.recv_into = tls_recv_into(sock)
            self.send = tls_send(sock)
        else:  # plain TCP: the socket's own methods, nothing in between
            self.recv_into = sock.recv_into
            self.send = sock.send
        self.gets = reader.gets
        self.feed = reader.feed
        self.has_data = reader.has_data
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
        self.has_data = _no_data
        self.batch = None
        self.received = 0
        self.out = b""

    @property
    def in_flight(self) -> int:
        if self.batch is None:
            return 0
        return len(self.batch.kinds) - self.received


def _no_batch() -> Batch:
    raise RuntimeError("a connection without a request stream")


def _closed_recv(_buffer: bytearray) -> int:
    raise OSError(errno.EBADF, "connection closed")


def _closed_send(_data: bytes) -> int:
    raise OSError(errno.EBADF, "connection closed")


def _nothing() -> Any:
    return NO_REPLY


def _ignore(_data: bytearray, _offset: int, _length: int) -> None:
    return None


def _no_data() -> bool:
    return False


class RespConnections:
    """The connections of one load process to its target, and their reconnection."""

    def __init__(self, target: Target, count: int, recorder: LoadRecorder) -> None:
        self.target = target
        self.recorder = recorder
        self.connections = [Connection() for _ in range(count)]
        # What a new connection sends during prepare (ending with PING), and at a reconnection.
        self.handshake = handshake(target, ping=True)
        self._rehandshake = handshake(target, ping=False)
        self._tls: ssl.SSLContext | None = None
        self._server_name = server_name(target.tls or {}, target.address)
        self._family = socket.AF_INET
        self.slots: SlotMap | None = None  # a cluster's, found at prepare
        self._poller: Any = None
        self._by_fd: dict[int, Connection] = {}
        self._timers: list[Connection] = []
        self._buffer = bytearray(RECV_SIZE)
        self.reply_timeout_ns = 0  # 0: no reply timeout (the load sets its own)

    def _send_batch(self, conn: Connection, now: int) -> bool:
        """Send ``conn`` its next batch (the load's business); whether any of it went out."""
        raise NotImplementedError

    def open_all(self) -> None:
        """Open and authenticate every connection (blocking); DriverError if the target
        cannot be used."""
        if self.target.tls is not None:
            self._tls = client_context(self.target.tls)
        address = self._resolve(self.target.address, self.target.port)
        addresses = [address]
        if self.target.cluster:
            self.slots = self._discover(address)
            addresses = [self._resolve(node.host, node.port) for node in self.slots.nodes]
            if len(self.connections) < len(addresses):
                raise DriverError(
                    KIND_CONFIG,
                    f"the cluster at {self.target.endpoint} has {len(addresses)} primaries; "
                    f"each load process needs at least as many connections, it has "
                    f"{len(self.connections)}",
                )
        for index, conn in enumerate(self.connections):
            conn.node = index % len(addresses)
            conn.address = addresses[conn.node]
            sock = self._open_blocking(conn.address)
            conn.attach(sock)
            conn.state = READY

    def _discover(self, seed: tuple[Any, ...]) -> SlotMap:
        """The cluster's slot map from the seed node: ``CLUSTER SHARDS`` (Redis 7), else
        ``CLUSTER SLOTS``; every slot must be served."""
        endpoint = self.target.endpoint
        sock = self._open_blocking(seed)
        try:
            reply = exchange(sock, encode_command("CLUSTER", "SHARDS"), 1, endpoint)[0]
            if isinstance(reply, hiredis.ReplyError):
                reply = exchange(sock, encode_command("CLUSTER", "SLOTS"), 1, endpoint)[0]
                if isinstance(reply, hiredis.ReplyError):
                    raise DriverError(
                        KIND_SERVER, f"{endpoint} is not a cluster node (servers[].cluster): "
                        f"CLUSTER SLOTS: {reply}")
                slots = from_slots(reply, self.target.address)
            else:
                slots = from_shards(reply, self.target.address)
        finally:
            sock.close()
        if not slots.nodes or slots.uncovered():
            raise DriverError(KIND_SERVER, f"the cluster at {endpoint} does not serve "
                              f"{slots.uncovered()} of its 16384 slots")
        return slots

    def set_nonblocking(self) -> None:
        for conn in self.connections:
            if conn.sock is not None:
                conn.sock.setblocking(False)

    def _resolve(self, host: str, port: int) -> tuple[Any, ...]:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise DriverError(
                KIND_UNREACHABLE, f"cannot resolve {host}: {describe_os_error(exc)}"
            ) from None
        family, _type, _proto, _name, address = infos[0]
        self._family = family
        return tuple(address)

    def _open_blocking(self, address: tuple[Any, ...]) -> socket.socket:
        endpoint = f"{address[0]}:{address[1]}"
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                bind_source(sock, self.target.source_address)
                sock.connect(address)
            except OSError as exc:
                raise DriverError(
                    KIND_UNREACHABLE, f"cannot connect to {endpoint}: {describe_os_error(exc)}"
                ) from None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._wrap_blocking(sock)
            commands = self.handshake.commands
            replies = exchange(sock, self.handshake.payload, len(commands), endpoint)
            for reply, command in zip(replies, commands, strict=True):
                if isinstance(reply, hiredis.ReplyError):
                    raise handshake_error(endpoint, command, str(reply))
        except BaseException:
            sock.close()
            raise
        return sock

    def _wrap_blocking(self, sock: socket.socket) -> socket.socket:
        """The TLS handshake on a connected blocking socket (its timeout applies)."""
        if self._tls is None:
            return sock
        try:
            return self._tls.wrap_socket(sock, server_hostname=self._server_name)
        except TimeoutError:
            raise DriverError(
                KIND_UNREACHABLE, f"{self.target.endpoint}: the TLS handshake timed out"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise DriverError(
                KIND_UNREACHABLE,
                f"TLS handshake with {self.target.endpoint} failed: {describe_tls_error(exc)}",
            ) from None

    def _open_poller(self, control_fd: int) -> None:
        """Poll the ready connections and ``control_fd`` (the agent's channel)."""
        self._poller = select.epoll() if hasattr(select, "epoll") else PollAdapter()
        self._poller.register(control_fd, IN)
        for conn in self.connections:
            if conn.state == READY:
                self._by_fd[conn.fd] = conn
                self._poller.register(conn.fd, IN)

    def _fail(self, conn: Connection) -> None:
        """The connection broke: count its lost requests, drop it, reconnect."""
        was_ready = conn.state == READY
        lost = max(1, conn.in_flight) if was_ready else 1
        self.recorder.count_error(ERROR_CONNECTION, lost)
        self._drop(conn)
        if was_ready:
            conn.attempts = 0
        self._schedule(conn)

    def reply_deadline(self, now: int) -> int:
        """When the loop must next look for timed-out connections (:meth:`_expire`):
        :func:`next_deadline` of the connections."""
        return next_deadline(self.connections, now, self.reply_timeout_ns)

    def _expire(self, now: int) -> None:
        """Every connection that awaited replies for the reply timeout (since its batch went
        out or its last reply came): its unanswered requests count as ``timeout`` errors, and
        it is closed and replaced at once (a reply that comes late is never read, so never
        counted twice). Every reconnection still connecting, shaking hands or authenticating
        at its :data:`CONNECT_TIMEOUT` deadline has failed (:meth:`_fail`: one ``connection``
        error, retried after the back-off)."""
        limit = self.reply_timeout_ns
        for conn in self.connections:
            state = conn.state
            if state == READY:
                if limit and conn.batch is not None and now - conn.last_reply_ns >= limit:
                    self.recorder.count_error(ERROR_TIMEOUT, max(1, conn.in_flight))
                    self._drop(conn)
                    conn.attempts = 0
                    self._schedule(conn)
            elif state != DOWN and now >= conn.handshake_deadline:
                self._fail(conn)

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
            code = sock.connect_ex(conn.address)
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            sock.close()
            self.recorder.count_error(ERROR_CONNECTION)
            self._schedule(conn)
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.attach(sock)
        conn.state = CONNECTING
        conn.handshake_deadline = time.perf_counter_ns() + int(CONNECT_TIMEOUT * 1e9)
        self._by_fd[conn.fd] = conn
        self._poller.register(conn.fd, OUT | IN)

    def _advance(self, conn: Connection, events: int) -> None:
        """A connecting or authenticating connection has news."""
        sock = conn.sock
        if sock is None:
            return
        if conn.state == CONNECTING:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code or events & (ERR | HUP):
                self._fail(conn)
                return
            if self._tls is not None:
                conn.attach(self._tls.wrap_socket(
                    sock, server_hostname=self._server_name, do_handshake_on_connect=False
                ))  # the same descriptor: the poller's registration stands
                conn.state = TLS_HANDSHAKE
                self._tls_step(conn)
                return
            self._authenticate(conn)
            return
        if conn.state == TLS_HANDSHAKE:
            self._tls_step(conn)
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
        while (reply := conn.gets()) is not NO_REPLY:
            if isinstance(reply, hiredis.ReplyError):
                self.recorder.count_error(error_type(str(reply)))
                self._drop(conn)
                self._schedule(conn)
                return
            conn.received += 1
        if conn.received >= len(self._rehandshake):
            conn.received = 0
            self._ready(conn)

    def _tls_step(self, conn: Connection) -> None:
        """Advance a non-blocking TLS handshake; authenticate when it is done."""
        step = handshake_step(conn.sock)
        if step == HANDSHAKE_READ:
            self._poller.modify(conn.fd, IN)
        elif step == HANDSHAKE_WRITE:
            self._poller.modify(conn.fd, IN | OUT)
        elif step == HANDSHAKE_FAILED:  # a refused certificate is a failed attempt
            self._fail(conn)
        else:
            self._authenticate(conn)

    def _authenticate(self, conn: Connection) -> None:
        """Send the handshake (AUTH, HELLO, SELECT) of a reconnection; ready when it needs none."""
        payload = self._rehandshake.payload
        if not payload:
            self._ready(conn)
            return
        try:
            sent = conn.send(payload)  # tiny: the socket buffer of a new connection holds it
        except OSError:
            sent = 0
        if sent < len(payload):
            self._fail(conn)
            return
        conn.received = 0
        conn.state = AUTHENTICATING
        self._poller.modify(conn.fd, IN)

    def _ready(self, conn: Connection) -> None:
        conn.state = READY
        conn.attempts = 0
        self._poller.modify(conn.fd, IN)
        self._send_batch(conn, time.perf_counter_ns())

    def close(self) -> None:
        for conn in self.connections:
            conn.detach()
        if self._poller is not None:
            with contextlib.suppress(OSError):
                self._poller.close()


def next_deadline(connections: Iterable[Connection], now: int, reply_timeout_ns: int) -> int:
    """The earliest instant (perf clock) a connection may time out: a ready one awaiting
    replies (``reply_timeout_ns`` after its last reply; 0: no reply timeout), or one
    connecting, shaking hands or authenticating (its ``handshake_deadline``). With a reply
    timeout, at the latest one timeout from ``now``, so that a batch sent after this call is
    still looked at in time; :data:`NEVER` when nothing can time out."""
    deadline = now + reply_timeout_ns if reply_timeout_ns else NEVER
    for conn in connections:
        state = conn.state
        if state == READY:
            if reply_timeout_ns and conn.batch is not None:
                deadline = min(deadline, conn.last_reply_ns + reply_timeout_ns)
        elif state != DOWN:
            deadline = min(deadline, conn.handshake_deadline)
    return deadline


class PollAdapter:
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


def exchange(sock: socket.socket, payload: bytes, replies: int, endpoint: str) -> list[Any]:
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
            KIND_UNREACHABLE, f"connection to {endpoint} failed: {describe_os_error(exc)}"
        ) from None
    except hiredis.ProtocolError as exc:  # an HTTP server's "HTTP/1.1 400", say
        raise DriverError(
            KIND_UNREACHABLE, f"{endpoint} does not answer in RESP (not a Redis server?): {exc}"
        ) from None
    return answers


def handshake_error(endpoint: str, command: str, message: str) -> DriverError:
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
            f"{describe_os_error(exc)}",
        ) from None


def describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
