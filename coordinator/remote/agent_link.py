"""The coordinator's end of the RPyC link to one agent: the connection and its handshake.

An :class:`AgentLink` runs over any connected byte stream to the agent's port — a plain socket
(tests, a local agent) or a paramiko ``direct-tcpip`` channel from :meth:`SSHHost.open_channel
<coordinator.remote.ssh.SSHHost.open_channel>` (the SSH-forwarded production path), wrapped in
a :class:`~coordinator.remote.channel_stream.ChannelStream`. It:

1. sends the token line and reads the agent's one-line answer (:mod:`agent.protocol`): a wrong
   token raises ``AgentAuthError(host, "agent refused the token")``, other versions raise
   ``AgentAuthError`` naming both sides' coord and rpyc versions — the check is mutual;
2. starts RPyC with a deny-by-default client configuration (:data:`CLIENT_CONFIG`): the agent
   cannot reach into the coordinator either;
3. carries plain data for the typed calls it inherits from
   :class:`~coordinator.remote.agent_calls.AgentCalls` (the messages of :mod:`agent.api`).

Errors leave as coord's own: transport failures and timeouts as ``AgentLost(host, reason)``
(and the link closes), an exception raised inside the agent as ``AgentError`` with its type and
message, junk where a reply belongs as ``AgentError``.

Also here: :func:`parse_ready_line` for the agent's startup line, :func:`startup_line` and
:func:`new_token` for what the coordinator writes on the agent's stdin. Liveness and clocks
are in :mod:`coordinator.remote.heartbeat`.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

import rpyc
from rpyc.utils.factory import connect_stream

import coordinator
from agent import protocol
from agent.messages import MessageError, ReadyInfo, decode
from coordinator.core.errors import AgentAuthError, AgentError, AgentLost
from coordinator.remote.agent_calls import (
    LOAD_PREPARE_TIMEOUT,
    LOAD_REPORT_TIMEOUT,
    LOAD_STOP_TIMEOUT,
    AgentCalls,
    AgentInfo,
    AgentStatus,
    LoadError,
    LoadProgress,
    shown,
)
from coordinator.remote.channel_stream import ByteChannel, ChannelStream
from coordinator.remote.heartbeat import Heartbeater, measure_offset

__all__ = [  # the link, and the names its users import with it
    "CLIENT_CONFIG",
    "COORDINATOR_VERSIONS",
    "LOAD_PREPARE_TIMEOUT",
    "LOAD_REPORT_TIMEOUT",
    "LOAD_STOP_TIMEOUT",
    "AgentInfo",
    "AgentLink",
    "AgentStatus",
    "ByteChannel",
    "ChannelStream",
    "Heartbeater",
    "LoadError",
    "LoadProgress",
    "ReadyInfo",
    "measure_offset",
    "new_token",
    "parse_ready_line",
    "startup_line",
]

#: What this coordinator announces, and expects from every agent.
COORDINATOR_VERSIONS: Final = protocol.Versions(
    coord=coordinator.__version__, rpyc=rpyc.__version__
)

#: rpyc protocol configuration of the coordinator's side: the agent may read nothing of ours.
CLIENT_CONFIG: Final[dict[str, object]] = dict(protocol.DENY_BY_DEFAULT)

_PLAIN_TYPES: Final = frozenset({str, bytes, int, float, bool, type(None)})


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
        raise AgentError(host, f"agent did not start: expected its ready line, got {shown(text)}")
    if fields.get("event") == protocol.ERROR_EVENT:
        message = str(fields.get("message") or fields.get("error") or "no reason given")
        if fields.get("error") == protocol.ERROR_VERSION_MISMATCH:
            raise AgentAuthError(host, f"agent refused to start: {message}")
        raise AgentError(host, f"agent refused to start: {message}")
    if fields.get("event") != protocol.READY_EVENT or set(fields) != set(protocol.READY_KEYS):
        raise AgentError(host, f"agent did not start: not a ready line: {shown(text)}")
    try:
        info = decode(ReadyInfo, {key: value for key, value in fields.items() if key != "event"})
    except MessageError as exc:
        raise AgentError(host, f"agent did not start: the ready line's {exc}") from None
    if not 0 < info.port < 65536 or info.pid <= 0:
        raise AgentError(host, f"agent did not start: impossible port or pid in {shown(text)}")
    return info


# --- the link --------------------------------------------------------------------------------


class AgentLink(AgentCalls):
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

    def call_within(self, name: str, timeout: float, *args: object) -> object:
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
                if isinstance(exc, KeyboardInterrupt):
                    # Ctrl-C while the call waited: its answer is still to come, and the agent
                    # answers this link's calls in order, so a stop() sent now would wait for
                    # it (a netperf iteration, a preload). Closed while the call is in flight,
                    # the link is cut at once, and the agent's stdin ends it instead.
                    self.close()
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

    def _plain(self, name: str, result: object) -> object:
        """``result`` if it is plain data; otherwise the agent is not ours: close, refuse."""
        if not _is_plain(result):
            self.close()
            raise AgentError(
                self.host, f"{name}() answered a {type(result).__name__}, not plain data"
            )
        return result


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
        raise AgentError(host, f"unexpected answer to the token: {shown(line)}") from None
    if not reply.ok:
        if reply.reason == protocol.REASON_TOKEN:
            raise AgentAuthError(host, "agent refused the token")
        if reply.reason == protocol.REASON_VERSION and reply.versions is not None:
            raise AgentAuthError(
                host, protocol.version_mismatch("coordinator", versions, "agent", reply.versions)
            )
        raise AgentAuthError(host, f"agent refused the connection ({reply.reason or 'no reason'})")
    if reply.versions is None:  # decode_auth_reply refuses an "ok" without versions
        raise AgentError(host, f"unexpected answer to the token: {shown(line)}")
    if reply.protocol != protocol.PROTOCOL_VERSION or reply.versions != versions:
        raise AgentAuthError(
            host, protocol.version_mismatch("coordinator", versions, "agent", reply.versions)
        )
    return reply.versions


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


class _Expired(Exception):
    """A call with its own timeout got no answer in time (turned into ``AgentLost``)."""

