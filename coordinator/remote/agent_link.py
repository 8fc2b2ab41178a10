"""The coordinator's end of the RPyC link to one agent: the only module that touches rpyc.

An :class:`AgentLink` runs over any connected byte stream to the agent's port — a plain socket
(tests, a local agent) or a paramiko ``direct-tcpip`` channel from :meth:`SSHHost.open_channel
<coordinator.remote.ssh.SSHHost.open_channel>` (the SSH-forwarded production path). It:

1. sends the token line and reads the agent's one-line answer (:mod:`agent.protocol`): a wrong
   token raises ``AgentAuthError(host, "agent refused the token")``, other versions raise
   ``AgentAuthError`` naming both sides' coord and rpyc versions — the check is mutual;
2. starts RPyC with a deny-by-default client configuration (:data:`CLIENT_CONFIG`): the agent
   cannot reach into the coordinator either;
3. offers typed methods whose answers are checked plain data, parsed into frozen dataclasses.

Errors leave as coord's own: transport failures and timeouts as ``AgentLost(host, reason)``
(and the link closes), an exception raised inside the agent as ``AgentError`` with its type and
message, junk where a reply belongs as ``AgentError``.

Also here: :func:`parse_ready_line` for the agent's startup line, :func:`startup_line` and
:func:`new_token` for what the coordinator writes on the agent's stdin, :class:`Heartbeater`,
and :func:`measure_offset` (the I/O half of :mod:`coordinator.core.clock`).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Protocol

import rpyc
from rpyc.core import consts
from rpyc.core.stream import Stream
from rpyc.utils.factory import connect_stream

import coordinator
from agent import protocol
from agent.drivers.base import DriverError, Prepared
from agent.runlock import Holder
from coordinator.core.clock import ClockEstimate, ClockSample, estimate_offset
from coordinator.core.errors import AgentAuthError, AgentError, AgentLost

#: What this coordinator announces, and expects from every agent.
COORDINATOR_VERSIONS: Final = protocol.Versions(
    coord=coordinator.__version__, rpyc=rpyc.__version__
)

#: rpyc protocol configuration of the coordinator's side: the agent may read nothing of ours.
CLIENT_CONFIG: Final[dict[str, object]] = {
    "allow_safe_attrs": False,
    "safe_attrs": frozenset(),
    "allow_exposed_attrs": False,
    "allow_public_attrs": False,
    "allow_all_attrs": False,
    "allow_getattr": False,
    "allow_setattr": False,
    "allow_delattr": False,
    "allow_pickle": False,
    "import_custom_exceptions": False,
    "instantiate_custom_exceptions": False,
    "instantiate_oldstyle_exceptions": False,
    "propagate_SystemExit_locally": False,
    "include_local_traceback": False,
    "include_local_version": False,
    "close_catchall": True,
}

_PLAIN_TYPES: Final = frozenset({str, bytes, int, float, bool, type(None)})
_SHOWN_JUNK = 120


# --- the byte stream under rpyc --------------------------------------------------------------


class ByteChannel(Protocol):
    """What :class:`ChannelStream` needs: the common part of ``socket.socket`` and
    ``paramiko.Channel``."""

    def recv(self, nbytes: int, /) -> bytes: ...
    def send(self, data: bytes, /) -> int: ...
    def settimeout(self, timeout: float | None, /) -> None: ...
    def fileno(self) -> int: ...
    def shutdown(self, how: int, /) -> None: ...
    def close(self) -> None: ...


class ChannelStream(Stream):  # type: ignore[misc]  # rpyc ships no type hints
    """An rpyc ``Stream`` over a socket or a paramiko ``Channel``.

    rpyc's own ``SocketStream`` nearly fits both, but loops forever when a paramiko channel's
    ``send`` returns 0 (what it does once the channel is closed or at EOF); here 0 bytes sent is
    the end of the stream. Bytes read past the handshake line are kept for rpyc.
    """

    __slots__ = ("_chan", "_closed", "_pending")
    MAX_IO_CHUNK = consts.STREAM_CHUNK

    def __init__(self, chan: ByteChannel) -> None:
        self._chan = chan
        self._pending = b""
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, EOFError):
            self._chan.shutdown(socket.SHUT_RDWR)  # wakes any thread polling this stream
        with contextlib.suppress(OSError, EOFError):
            self._chan.close()

    def fileno(self) -> int:
        if self._closed:
            raise EOFError("stream closed")
        try:
            return self._chan.fileno()
        except OSError as exc:
            self.close()
            raise EOFError(str(exc)) from exc

    def poll(self, timeout: object) -> bool:  # seconds, None, or an rpyc Timeout
        if self._pending:
            return True
        return bool(super().poll(timeout))

    def read(self, count: int) -> bytes:
        data = self._pending[:count]
        self._pending = self._pending[count:]
        chunks = [data]
        missing = count - len(data)
        while missing > 0:
            buf = self._recv(min(self.MAX_IO_CHUNK, missing))
            chunks.append(buf)
            missing -= len(buf)
        return b"".join(chunks)

    def write(self, data: bytes) -> None:
        offset = 0
        while offset < len(data):
            try:
                sent = self._chan.send(data[offset : offset + self.MAX_IO_CHUNK])
            except OSError as exc:
                self.close()
                raise EOFError(f"send failed: {exc}") from exc
            if sent <= 0:
                self.close()
                raise EOFError("the channel closed while sending")
            offset += sent

    def read_line(self, limit: int, timeout: float) -> bytes:
        """One ``\\n``-terminated line (without it), for the handshake; what follows is kept.

        Raises TimeoutError after ``timeout`` seconds, EOFError if the stream ends, ValueError
        beyond ``limit`` bytes.
        """
        deadline = time.monotonic() + timeout
        data = self._pending
        try:
            while b"\n" not in data:
                if len(data) > limit:
                    raise ValueError(f"line longer than {limit} bytes")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no line within {timeout:g} s")
                self._chan.settimeout(remaining)
                data += self._recv(limit + 1 - len(data), timeouts_pass=False)
        finally:
            if not self._closed:
                with contextlib.suppress(OSError):
                    self._chan.settimeout(None)
        line, _, self._pending = data.partition(b"\n")
        return line

    def _recv(self, size: int, *, timeouts_pass: bool = True) -> bytes:
        while True:
            try:
                buf = self._chan.recv(size)
            except TimeoutError:
                if timeouts_pass:
                    continue
                raise
            except OSError as exc:
                self.close()
                raise EOFError(f"receive failed: {exc}") from exc
            if not buf:
                self.close()
                raise EOFError("the agent closed the connection")
            return buf


# --- typed answers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadyInfo:
    """The agent's ready line: where it listens (on the host's 127.0.0.1) and what it runs."""

    port: int
    pid: int
    agent_version: str
    python: str
    rpyc_version: str


@dataclass(frozen=True)
class AgentInfo:
    """``hello()``: who the agent is."""

    agent_version: str
    rpyc_version: str
    python: str
    implementation: str
    platform: str
    machine: str
    hostname: str
    pid: int
    start_time_ns: int
    bundle_hash: str | None


@dataclass(frozen=True)
class AgentStatus:
    """``status()``: how the agent is doing; ``heartbeat_age_s`` is None before any heartbeat."""

    uptime_s: float
    pid: int
    rss_bytes: int
    cpu_s: float
    children: int
    heartbeat_age_s: float | None
    request_age_s: float
    watchdog_s: float


@dataclass(frozen=True)
class LoadProgress:
    """``load_progress()``: a live snapshot of the agent's load.

    ``state``: idle, preparing, prepared, running, finished, stopped or failed. ``interval``:
    the last interval every load process finished (None before the first), with its
    ``phase``, ``ops_per_sec`` and ``p99_usec`` over all commands; ``errors``: every error so
    far; ``problem``: why a failed load failed.
    """

    state: str
    interval: int | None
    phase: str | None
    ops_per_sec: float | None
    p99_usec: float | None
    errors: int
    problem: str | None


#: Longest wait for ``prepare_load`` (connections, keyspace preload; the agent gives up after
#: 600 s itself), ``stop_load`` and ``load_report`` (merging a long run's intervals).
LOAD_PREPARE_TIMEOUT = 660.0
LOAD_STOP_TIMEOUT = 30.0
LOAD_REPORT_TIMEOUT = 120.0

_DRIVER_ERROR_TYPE = "agent.drivers.errors.DriverError"


class LoadError(AgentError):
    """The agent's load driver refused or failed: ``kind`` (``config``, ``unreachable``,
    ``auth``, ``server``, ``state``, ``worker``...) and a one-line ``message`` for the user,
    e.g. ``client1: cannot authenticate to 198.18.0.10:6379: WRONGPASS invalid ...``."""

    def __init__(self, host: str, kind: str, message: str) -> None:
        self.kind = kind
        self.message = message
        super().__init__(host, message)


# --- startup ---------------------------------------------------------------------------------


def new_token() -> str:
    """A fresh per-deployment token (hex)."""
    return secrets.token_hex(protocol.TOKEN_BYTES)


def startup_line(token: str, versions: protocol.Versions = COORDINATOR_VERSIONS) -> bytes:
    """The line to write on the agent's stdin right after starting it."""
    return protocol.encode_startup(token, versions)


def parse_ready_line(line: str, host: str = "agent") -> ReadyInfo:
    """Parse the agent's first stdout line; ``AgentAuthError`` if it refused our versions,
    ``AgentError`` if it refused otherwise or printed something else."""
    text = line.strip()
    fields = _json_object(text)
    if fields is None:
        raise AgentError(host, f"agent did not start: expected its ready line, got {_shown(text)}")
    if fields.get("event") == protocol.ERROR_EVENT:
        message = str(fields.get("message") or fields.get("error") or "no reason given")
        if fields.get("error") == protocol.ERROR_VERSION_MISMATCH:
            raise AgentAuthError(host, f"agent refused to start: {message}")
        raise AgentError(host, f"agent refused to start: {message}")
    if fields.get("event") != protocol.READY_EVENT or set(fields) != set(protocol.READY_KEYS):
        raise AgentError(host, f"agent did not start: not a ready line: {_shown(text)}")
    reader = _Fields(host, "the ready line", fields)
    info = ReadyInfo(
        port=reader.integer("port"),
        pid=reader.integer("pid"),
        agent_version=reader.text("agent_version"),
        python=reader.text("python"),
        rpyc_version=reader.text("rpyc_version"),
    )
    if not 0 < info.port < 65536 or info.pid <= 0:
        raise AgentError(host, f"agent did not start: impossible port or pid in {_shown(text)}")
    return info


# --- the link --------------------------------------------------------------------------------


class AgentLink:
    """An authenticated RPyC connection to one agent. Thread-safe; use :meth:`connect`."""

    def __init__(
        self,
        host: str,
        conn: Any,
        agent_versions: protocol.Versions,
        request_timeout: float,
    ) -> None:
        self.host = host
        self.agent_versions = agent_versions
        self.request_timeout = request_timeout
        self._conn = conn
        self._root: Any = None
        self._methods: dict[str, Any] = {}
        self._closed = False
        self._loss: AgentLost | None = None
        self._in_flight = 0
        self._lock = threading.Lock()

    @classmethod
    def connect(
        cls,
        host: str,
        channel: ByteChannel,
        token: str,
        *,
        handshake_timeout: float | None = None,
        request_timeout: float | None = None,
        versions: protocol.Versions = COORDINATOR_VERSIONS,
    ) -> AgentLink:
        """Authenticate on ``channel`` (connected to the agent's port) and start RPyC.

        ``versions`` is what we announce; only tests change it. On failure the channel is
        closed and ``AgentAuthError`` / ``AgentLost`` / ``AgentError`` raised.
        """
        handshake_timeout = (
            protocol.AUTH_TIMEOUT if handshake_timeout is None else handshake_timeout
        )
        request_timeout = protocol.REQUEST_TIMEOUT if request_timeout is None else request_timeout
        stream = ChannelStream(channel)
        try:
            agent_versions = _handshake(stream, host, token, versions, handshake_timeout)
            conn = connect_stream(
                stream, config=dict(CLIENT_CONFIG, sync_request_timeout=request_timeout)
            )
        except BaseException:
            stream.close()
            raise
        link = cls(host, conn, agent_versions, request_timeout)
        try:
            link._root = link._guarded("connect", lambda: conn.root)
        except BaseException:
            link.close()
            raise
        return link

    @classmethod
    def connect_tcp(
        cls,
        host: str,
        port: int,
        token: str,
        *,
        address: str = "127.0.0.1",
        connect_timeout: float = 5.0,
        **options: Any,
    ) -> AgentLink:
        """:meth:`connect` over a plain TCP connection to ``address:port`` (local agents)."""
        try:
            sock = socket.create_connection((address, port), timeout=connect_timeout)
        except OSError as exc:
            raise AgentLost(
                host, f"cannot connect to the agent at {address}:{port}: {exc}"
            ) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls.connect(host, sock, token, **options)

    # --- the agent's API ------------------------------------------------------------------

    def hello(self) -> AgentInfo:
        fields = self._json("hello")
        info = AgentInfo(
            agent_version=fields.text("agent_version"),
            rpyc_version=fields.text("rpyc_version"),
            python=fields.text("python"),
            implementation=fields.text("implementation"),
            platform=fields.text("platform"),
            machine=fields.text("machine"),
            hostname=fields.text("hostname"),
            pid=fields.integer("pid"),
            start_time_ns=fields.integer("start_time_ns"),
            bundle_hash=fields.optional_text("bundle_hash"),
        )
        fields.no_more()
        return info

    def heartbeat(self) -> int:
        """Keep the agent's watchdog quiet; returns the agent's ``time.time_ns()``."""
        return self._integer("heartbeat")

    def clock(self) -> int:
        """The agent's ``time.time_ns()``."""
        return self._integer("clock")

    def status(self) -> AgentStatus:
        fields = self._json("status")
        status = AgentStatus(
            uptime_s=fields.number("uptime_s"),
            pid=fields.integer("pid"),
            rss_bytes=fields.integer("rss_bytes"),
            cpu_s=fields.number("cpu_s"),
            children=fields.integer("children"),
            heartbeat_age_s=fields.optional_number("heartbeat_age_s"),
            request_age_s=fields.number("request_age_s"),
            watchdog_s=fields.number("watchdog_s"),
        )
        fields.no_more()
        return status

    def stop(self) -> None:
        """Ask the agent to stop (it answers first, then stops its processes and exits) and
        close the link. An agent that vanishes while answering has stopped too."""
        with contextlib.suppress(AgentLost):
            self.call("stop")
        self.close()

    # --- load (agent.load) -----------------------------------------------------------------

    def prepare_load(self, spec_json: str) -> Prepared:
        """Prepare the load described by ``spec_json``: what the client will run with.

        May take long (preloading the keyspace); ``LoadError`` if the agent's driver refuses
        (wrong password, unreachable target, unsupported parameter...): no load has started.
        """
        answer = self._call_load("prepare_load", LOAD_PREPARE_TIMEOUT, spec_json)
        try:
            return Prepared.from_json(_json_object(self._json_text("prepare_load", answer)))
        except DriverError as exc:
            raise AgentError(self.host, f"prepare_load() answered: {exc.message}") from None

    def take_run_lock(self, holder: Holder, *, force: bool) -> str | None:
        """Take the host's run lock for ``holder`` (held until the agent exits); ``LoadError``
        of kind ``busy`` naming whoever holds it, or with ``force``, who held it (None when
        this run holds the lock)."""
        holder_json = json.dumps(holder.to_json())
        fields = self._load_json("take_run_lock", self.request_timeout, holder_json, force)
        forced_over = fields.optional_text("forced_over")
        fields.no_more()
        return forced_over

    def start_load(self, t0_agent_ns: int) -> int:
        """Start the prepared load at ``t0_agent_ns`` in the agent's clock; returns at once
        with the start instant the agent accepted."""
        fields = self._load_json("start_load", self.request_timeout, t0_agent_ns)
        t0_ns = fields.integer("t0_ns")
        fields.no_more()
        return t0_ns

    def load_progress(self) -> LoadProgress:
        fields = self._load_json("load_progress", self.request_timeout)
        progress = LoadProgress(
            state=fields.text("state"),
            interval=fields.optional_integer("interval"),
            phase=fields.optional_text("phase"),
            ops_per_sec=fields.optional_number("ops_per_sec"),
            p99_usec=fields.optional_number("p99_usec"),
            errors=fields.integer("errors"),
            problem=fields.optional_text("problem"),
        )
        fields.no_more()
        return progress

    def stop_load(self) -> str:
        """Stop the agent's load if one is prepared or running (the interval in progress is
        cut); the state it is in afterwards."""
        fields = self._load_json("stop_load", LOAD_STOP_TIMEOUT)
        state = fields.text("state")
        fields.no_more()
        return state

    def load_report(self) -> str:
        """The finished or stopped load's report, as the agent's JSON text (format 1,
        documented in ``agent/drivers/intervals.py``; ``coordinator.core.stats`` parses it)."""
        return self._json_text("load_report", self._call_load("load_report", LOAD_REPORT_TIMEOUT))

    def _call_load(self, name: str, timeout: float, *args: object) -> object:
        """``call`` with its own timeout; a driver's error becomes a ``LoadError``."""
        try:
            return self._call_within(name, timeout, *args)
        except AgentError as exc:
            cause = exc.__cause__
            kind = getattr(cause, "kind", None)
            message = getattr(cause, "message", None)
            if (
                hasattr(cause, "_remote_tb")
                and type(cause).__name__ == _DRIVER_ERROR_TYPE
                and isinstance(kind, str)
                and isinstance(message, str)
            ):
                raise LoadError(self.host, kind, message) from cause
            raise

    def _call_within(self, name: str, timeout: float, *args: object) -> object:
        """``call(name, *args)``, waiting up to ``timeout`` seconds instead of the link's
        request timeout (an answer that does not come closes the link, as in ``call``)."""

        def action() -> object:
            method = rpyc.async_(self._method(name))
            pending = method(*args)
            pending.set_expiry(timeout)
            try:
                return pending.value
            except TimeoutError:
                raise _Expired(f"no answer to {name}() within {timeout:g} s") from None

        try:
            result = self._guarded(name, action)
        except _Expired as exc:
            lost = AgentLost(self.host, str(exc))
            self.close(loss=lost)
            raise lost from None
        return self._plain(name, result)

    def _load_json(self, name: str, timeout: float, *args: object) -> _Fields:
        return self._fields(name, self._call_load(name, timeout, *args))

    def call(self, name: str, *args: object) -> object:
        """Call the agent's method ``name`` with plain-data arguments; its plain-data answer."""
        return self._plain(name, self._guarded(name, lambda: self._method(name)(*args)))

    # --- life cycle -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        """A call is waiting for its answer (another thread's, e.g. a long ``prepare_load``).

        The agent answers one connection's calls in order, so a new call would queue behind it.
        """
        return self._in_flight > 0

    @property
    def loss(self) -> AgentLost | None:
        """Why the link was closed, when it closed because the agent stopped answering."""
        return self._loss

    def close(self, loss: AgentLost | None = None) -> None:
        """Close the connection (the agent keeps running); idempotent.

        ``loss``: the agent stopped answering. Calls pending on other threads, and any later
        call, then fail with that reason rather than with the closed connection's.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._loss = loss
            conn, self._conn = self._conn, None
            self._methods.clear()
            self._root = None
        if conn is None:
            return
        if loss is not None or self._in_flight:
            # rpyc's close waits for the agent to acknowledge it: a lost agent never does, and
            # a busy one answers only after the pending call. Cutting the stream first makes
            # the close (and the pending call) end at once.
            with contextlib.suppress(Exception):
                conn._channel.stream.close()
        else:
            conn._config["sync_request_timeout"] = protocol.CLOSE_REPLY_TIMEOUT
        with contextlib.suppress(Exception):
            conn.close()

    def __enter__(self) -> AgentLink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AgentLink {self.host} {state}>"

    # --- internals ------------------------------------------------------------------------

    def _method(self, name: str) -> Any:
        method = self._methods.get(name)
        if method is None:
            root = self._root
            if root is None:
                raise EOFError("the link is closed")
            method = getattr(root, name)  # one round trip, then cached: calls cost one each
            self._methods[name] = method
        return method

    def _guarded(self, name: str, action: Callable[[], Any]) -> Any:
        if self._closed:
            if self._loss is not None:
                raise AgentLost(self.host, self._loss.reason)
            raise AgentLost(self.host, f"cannot call {name}(): the link to the agent is closed")
        with self._lock:
            self._in_flight += 1
        try:
            return action()
        except BaseException as exc:
            error = self._translate(name, exc)
            if error is None:
                raise
            if isinstance(error, AgentLost):
                self.close(loss=error)
            raise error from exc
        finally:
            with self._lock:
                self._in_flight -= 1

    def _translate(self, name: str, exc: BaseException) -> AgentError | None:
        if hasattr(exc, "_remote_tb"):  # raised inside the agent, rebuilt here by rpyc
            detail = exc.args[0] if exc.args else ""
            return AgentError(
                self.host, f"{name}() failed on the agent: {type(exc).__name__}: {detail}"
            )
        if isinstance(exc, TimeoutError):  # rpyc's AsyncResultTimeout is the builtin
            return AgentLost(self.host, f"no answer to {name}() within {self.request_timeout:g} s")
        if isinstance(exc, (EOFError, OSError)):
            if self._loss is not None:  # closed by another thread that saw the agent lost
                return AgentLost(self.host, self._loss.reason)
            reason = str(exc) or type(exc).__name__
            return AgentLost(self.host, f"connection lost during {name}(): {reason}")
        return None

    def _integer(self, name: str) -> int:
        value = self.call(name)
        if type(value) is not int:
            raise AgentError(self.host, f"{name}() answered {_shown(value)}, not an integer")
        return value

    def _json(self, name: str) -> _Fields:
        return self._fields(name, self.call(name))

    def _plain(self, name: str, result: object) -> object:
        """``result`` if it is plain data; otherwise the agent is not ours: close, refuse."""
        if not _is_plain(result):
            self.close()
            raise AgentError(
                self.host, f"{name}() answered a {type(result).__name__}, not plain data"
            )
        return result

    def _json_text(self, name: str, value: object) -> str:
        if type(value) is not str:
            raise AgentError(self.host, f"{name}() answered {_shown(value)}, not JSON text")
        return value

    def _fields(self, name: str, value: object) -> _Fields:
        """``name()``'s answer, JSON text of an object, for typed reads."""
        fields = _json_object(self._json_text(name, value))
        if fields is None:
            raise AgentError(self.host, f"{name}() answered {_shown(value)}, not a JSON object")
        return _Fields(self.host, f"{name}()", fields)


def _handshake(
    stream: ChannelStream,
    host: str,
    token: str,
    versions: protocol.Versions,
    timeout: float,
) -> protocol.Versions:
    """Token line out, answer line in; the agent's versions, checked against ours."""
    try:
        stream.write(protocol.encode_auth_request(token, versions))
        line = stream.read_line(protocol.MAX_LINE_BYTES, timeout)
    except TimeoutError:
        raise AgentError(
            host, f"no answer to the token within {timeout:g} s: is this port the agent's?"
        ) from None
    except ValueError:
        raise AgentError(host, "the agent's port answered something too long to be ours") from None
    except (EOFError, OSError) as exc:
        raise AgentLost(host, f"connection closed during the token exchange: {exc}") from exc
    try:
        reply = protocol.decode_auth_reply(line)
    except protocol.ProtocolError:
        raise AgentError(host, f"unexpected answer to the token: {_shown(line)}") from None
    if not reply.ok:
        if reply.reason == protocol.REASON_TOKEN:
            raise AgentAuthError(host, "agent refused the token")
        if reply.reason == protocol.REASON_VERSION and reply.versions is not None:
            raise AgentAuthError(
                host, protocol.version_mismatch("coordinator", versions, "agent", reply.versions)
            )
        raise AgentAuthError(host, f"agent refused the connection ({reply.reason or 'no reason'})")
    if reply.versions is None:  # decode_auth_reply refuses an "ok" without versions
        raise AgentError(host, f"unexpected answer to the token: {_shown(line)}")
    if reply.protocol != protocol.PROTOCOL_VERSION or reply.versions != versions:
        raise AgentAuthError(
            host, protocol.version_mismatch("coordinator", versions, "agent", reply.versions)
        )
    return reply.versions


# --- liveness and clocks ---------------------------------------------------------------------


class Heartbeater:
    """Calls ``link.heartbeat()`` every ``interval`` seconds in a thread until stopped or the
    agent is lost; the loss is kept in :attr:`error` and passed to ``on_lost``."""

    def __init__(
        self,
        link: AgentLink,
        interval: float | None = None,
        on_lost: Callable[[AgentError], None] | None = None,
    ) -> None:
        self.link = link
        self.interval = protocol.HEARTBEAT_INTERVAL if interval is None else interval
        self.error: AgentError | None = None
        self._on_lost = on_lost
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{link.host}", daemon=True
        )

    def start(self) -> Heartbeater:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> Heartbeater:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.link.heartbeat()
            except AgentError as exc:
                if self._stopped.is_set():
                    return  # the link was closed on purpose
                self.error = exc
                if self._on_lost is not None:
                    self._on_lost(exc)
                return


def measure_offset(link: AgentLink, rounds: int = 8) -> ClockEstimate:
    """Estimate the agent's clock offset from ``rounds`` round trips of ``clock()``.

    Wall-clock timestamps are derived from one monotonic clock, so a step of the coordinator's
    wall clock during the measurement cannot produce a negative round trip.
    """
    if rounds < 1:
        raise ValueError("measure_offset needs at least one round")
    samples = []
    for _ in range(rounds):
        sent_mono = time.monotonic_ns()
        sent_ns = time.time_ns()
        agent_ns = link.clock()
        received_mono = time.monotonic_ns()
        # received >= the true wall time of the answer (sent_mono was read first): the
        # interval [sent_ns, received_ns] still contains the agent's reading.
        samples.append(ClockSample(sent_ns, agent_ns, sent_ns + (received_mono - sent_mono)))
    return estimate_offset(samples)


# --- helpers ---------------------------------------------------------------------------------


def _json_object(text: str) -> dict[str, Any] | None:
    """``text`` parsed as a JSON object; None for anything else, junk and deep nesting included."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _is_plain(value: object) -> bool:
    if type(value) is tuple:
        return all(_is_plain(item) for item in value)
    return type(value) in _PLAIN_TYPES


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_JUNK else text[: _SHOWN_JUNK - 3] + "..."


class _Expired(Exception):
    """A call with its own timeout got no answer in time (turned into ``AgentLost``)."""


class _Fields:
    """Typed reads from a JSON object an agent sent; any surprise is an ``AgentError``."""

    def __init__(self, host: str, what: str, fields: dict[str, Any]) -> None:
        self._host = host
        self._what = what
        self._fields = fields
        self._read: set[str] = set()

    def _get(self, key: str) -> object:
        if key not in self._fields:
            raise self._error(f"has no {key!r}")
        self._read.add(key)
        return self._fields[key]

    def _error(self, problem: str) -> AgentError:
        return AgentError(self._host, f"{self._what} {problem}")

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self._error(f"has {key!r} = {_shown(value)}, not a string")
        return value

    def optional_text(self, key: str) -> str | None:
        return None if self._get(key) is None else self.text(key)

    def integer(self, key: str) -> int:
        value = self._get(key)
        if type(value) is not int:
            raise self._error(f"has {key!r} = {_shown(value)}, not an integer")
        return value

    def number(self, key: str) -> float:
        value = self._get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self._error(f"has {key!r} = {_shown(value)}, not a number")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return None if self._get(key) is None else self.number(key)

    def optional_integer(self, key: str) -> int | None:
        return None if self._get(key) is None else self.integer(key)

    def no_more(self) -> None:
        extra = sorted(set(self._fields) - self._read)
        if extra:
            raise self._error(f"has unknown field(s): {', '.join(extra)}")
