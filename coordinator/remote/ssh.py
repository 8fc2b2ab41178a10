"""SSH to one inventory host: the only module that touches fabric and paramiko.

Everything coord does on a host goes through an :class:`SSHHost`: connecting (host key checked
against the inventory's known_hosts, handshakes limited and retried), running commands (argv
only, joined with :func:`shlex.join`, so no inventory value reaches a remote shell unquoted),
starting a long-lived process whose standard input is its lifeline (:class:`RemoteProcess`),
uploading files over SFTP (bytes counted) and opening ``direct-tcpip`` channels through the same
transport (the RPyC link to the agent). Every paramiko/socket failure leaves this module as one
of coord's own errors, named after the host:

    HostUnreachable      TCP refused/unroutable/timed out, or no SSH handshake within the timeout
    HostKeyRejected      unknown host key (strict policy) or a key that differs from known_hosts
    SSHAuthFailed        the host refused the user or key
    RemoteCommandFailed  a command exited non-zero, timed out, or an upload failed
    AgentError           a tunnel to the agent's port could not be opened

Host keys. fabric's ``Connection`` accepts any key by default (paramiko ``AutoAddPolicy``, no
known_hosts loaded); here the inventory's known_hosts file is loaded and the missing-key policy
is set explicitly: ``strict`` refuses unknown keys, ``accept-new`` appends them to the
known_hosts file (like OpenSSH's ``StrictHostKeyChecking=accept-new``). A changed key is
always refused (paramiko raises ``BadHostKeyException`` before any policy is asked). The
operator's ``~/.ssh/config`` and fabric's own config files are never read: an inventory means
the same thing on every machine.

Handshakes. sshd's ``MaxStartups`` drops unauthenticated connections beyond its limit; they
show up as "Error reading SSH protocol banner" or an EOF during negotiation. A process-wide
:class:`HandshakeLimiter` (default :data:`MAX_CONCURRENT_HANDSHAKES`) bounds the handshakes in
flight and such transient failures are retried with full jitter, all within the host's
connect timeout. The timeout counts from the moment the host first gets a handshake slot, so
hosts queued behind others are not failed for waiting their turn.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import select
import shlex
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import paramiko
from fabric import Config, Connection
from paramiko.config import SSHConfig

from coordinator.core.errors import (
    AgentError,
    HostKeyRejected,
    HostUnreachable,
    RemoteCommandFailed,
    SSHAuthFailed,
    last_line,
)
from coordinator.inventory.schema import Host, SSHDefaults

MAX_CONCURRENT_HANDSHAKES = 8
"""Handshakes in flight per coordinator process (OpenSSH's default MaxStartups starts at 10)."""
RETRY_BASE_DELAY = 0.05
"""First back-off ceiling (seconds) after a transient handshake failure; doubles each time."""
RETRY_MAX_DELAY = 1.0
"""Largest back-off ceiling (seconds) between two handshake attempts."""
MIN_ATTEMPT_TIME = 0.2
"""No new handshake attempt is started with less than this left of the connect timeout."""
DEFAULT_COMMAND_TIMEOUT = 60.0
"""Seconds a :meth:`SSHHost.run` command may take unless the caller says otherwise."""
CHANNEL_OPEN_TIMEOUT = 10.0
"""Seconds to wait for the server to open a session or direct-tcpip channel."""
KEEPALIVE_INTERVAL = 15
"""Seconds between SSH keepalive messages on an idle connection."""
OUTPUT_GRACE = 1.0
"""Seconds :meth:`RemoteProcess.wait` keeps reading output that trails the exit status."""
STDERR_KEPT = 64 * 1024
"""Bytes of a remote process's standard error kept for error messages."""
_READ_SIZE = 65536
_DEADLINE_SLACK = 0.05
_SHOWN_COMMAND = 120

logging.getLogger("paramiko").addHandler(logging.NullHandler())
# paramiko logs transport-thread errors (with tracebacks) that coord reports as its own errors;
# without a handler they would reach stderr through logging's last-resort handler.

_TRANSIENT_MESSAGES = (
    "error reading ssh protocol banner",
    "connection reset by peer",
    "no existing session",
)


class HandshakeLimiter:
    """At most ``limit`` SSH handshakes in flight at once (shared by every :class:`SSHHost`)."""

    def __init__(self, limit: int = MAX_CONCURRENT_HANDSHAKES) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._slots = threading.BoundedSemaphore(limit)

    @contextlib.contextmanager
    def slot(self, timeout: float | None = None) -> Iterator[bool]:
        """Hold one slot for the ``with`` body; yields False if none freed within ``timeout``."""
        acquired = self._slots.acquire(timeout=timeout)
        try:
            yield acquired
        finally:
            if acquired:
                self._slots.release()


HANDSHAKE_LIMITER = HandshakeLimiter()
"""The process-wide limiter used when an :class:`SSHHost` is not given its own."""


def known_hosts_name(address: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: ``addr`` on port 22, ``[addr]:port`` otherwise."""
    return address if port == 22 else f"[{address}]:{port}"


def describe_key(key: paramiko.PKey) -> str:
    """``ssh-ed25519 SHA256:...``, the form ``ssh-keygen -l`` prints."""
    return f"{key.get_name()} {key.fingerprint}"


class _UnknownHostKey(paramiko.SSHException):
    """Raised by the strict policy; carries the key so the message can show its fingerprint."""

    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"unknown host key for {hostname}")
        self.hostname = hostname
        self.key = key


class _StrictPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse any host key that known_hosts does not hold."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise _UnknownHostKey(hostname, key)


_KNOWN_HOSTS_LOCK = threading.Lock()


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Record an unknown host key in known_hosts (appending, never rewriting the file)."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        record_host_key(self.known_hosts, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)


def record_host_key(known_hosts: Path, hostname: str, key: paramiko.PKey) -> None:
    """Append ``hostname key`` to ``known_hosts`` unless it is there already.

    Safe against other threads and processes doing the same (the file is locked and re-read
    under the lock). If another writer recorded a *different* key for the host in the
    meantime, ``BadHostKeyException`` is raised, as for any changed key.
    """
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _KNOWN_HOSTS_LOCK:
        fd = os.open(known_hosts, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            current = paramiko.HostKeys()
            with contextlib.suppress(OSError):
                current.load(str(known_hosts))
            known = current.lookup(hostname)
            if known is not None and key.get_name() in known:
                if known[key.get_name()] != key:
                    raise paramiko.BadHostKeyException(hostname, key, known[key.get_name()])
                return
            handle.seek(0, os.SEEK_END)
            if handle.tell() > 0:
                handle.seek(handle.tell() - 1)
                if handle.read(1) != "\n":
                    handle.write("\n")
            line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
            if line is None:
                raise ValueError(f"cannot write a known_hosts line for {hostname}")
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


def _fabric_config() -> Config:
    """A fabric config that reads no file at all: no ssh_config, no fabric.yaml."""
    return Config(lazy=True, ssh_config=SSHConfig(), overrides={"load_ssh_configs": False})


def _shown(command: str) -> str:
    return command if len(command) <= _SHOWN_COMMAND else command[: _SHOWN_COMMAND - 1] + "…"


def _is_transient(exc: BaseException) -> bool:
    """Whether a handshake failure looks like sshd dropping us (MaxStartups), worth a retry."""
    if isinstance(exc, EOFError | ConnectionResetError | BrokenPipeError):
        return True
    if isinstance(exc, paramiko.SSHException) and not isinstance(
        exc, paramiko.AuthenticationException | paramiko.BadHostKeyException
    ):
        text = str(exc).lower()
        return any(message in text for message in _TRANSIENT_MESSAGES)
    return False


def _socket_reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the address ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


class _Watchdog:
    """Shuts a socket down when a deadline passes, so no blocking read outlives the timeout."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._done = False
        self.fired = False
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def disarm(self) -> bool:
        """Stop the watchdog; True if it had not fired (the socket is intact)."""
        self._timer.cancel()
        with self._lock:
            self._done = True
            return not self.fired


class RemoteProcess:
    """A command running on a host over one exec channel; its stdin is the process's lifeline.

    Standard output is read line by line with :meth:`readline`; standard error is collected in
    the background of every read (the last :data:`STDERR_KEPT` bytes are kept for messages).
    Closing stdin (:meth:`close_stdin`, :meth:`close`, or the SSH connection dropping) is the
    signal a well-behaved remote process (the agent) takes to exit.
    """

    def __init__(
        self,
        host: str,
        command: str,
        channel: paramiko.Channel,
        *,
        stderr_limit: int | None = STDERR_KEPT,
    ) -> None:
        self.host = host
        self._stderr_limit = stderr_limit
        self.command = command
        self._channel = channel
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._eof = False
        self._lock = threading.Lock()

    def _pump(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for data; move what arrived into the buffers.

        Returns False once the channel is closed and drained.
        """
        channel = self._channel
        if not (channel.recv_ready() or channel.recv_stderr_ready() or channel.closed):
            poller = select.poll()  # not select(): coord may hold more than 1024 descriptors
            poller.register(channel.fileno(), select.POLLIN)
            poller.poll(max(timeout, 0.0) * 1000)
        moved = False
        while channel.recv_stderr_ready():
            self._stderr += channel.recv_stderr(_READ_SIZE)
            moved = True
        limit = self._stderr_limit
        if limit is not None and len(self._stderr) > limit:
            del self._stderr[: len(self._stderr) - limit]
        while channel.recv_ready():
            self._stdout += channel.recv(_READ_SIZE)
            moved = True
        if not moved and (channel.closed or channel.eof_received):
            data = channel.recv(_READ_SIZE) if not channel.closed else b""
            if data:
                self._stdout += data
                return True
            if not channel.recv_stderr_ready():
                self._eof = True
                return False
        return True

    def readline(self, timeout: float) -> str | None:
        """The next line of stdout (without its newline), or None at end of output.

        Raises ``TimeoutError`` if no complete line arrives within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                newline = self._stdout.find(b"\n")
                if newline >= 0:
                    line = bytes(self._stdout[:newline])
                    del self._stdout[: newline + 1]
                    return line.decode("utf-8", "replace").rstrip("\r")
                if self._eof:
                    if self._stdout:
                        rest = bytes(self._stdout)
                        self._stdout.clear()
                        return rest.decode("utf-8", "replace")
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self.host}: no output line from `{_shown(self.command)}` "
                        f"within {timeout:g}s"
                    )
                self._pump(remaining)

    def write(self, text: str) -> None:
        """Send ``text`` to the process's standard input."""
        self._channel.sendall(text.encode("utf-8"))

    def close_stdin(self) -> None:
        """Send EOF on the process's standard input (the agent's signal to stop)."""
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self._channel.shutdown_write()

    def stderr(self) -> str:
        """What the process wrote to stderr so far (its last :data:`STDERR_KEPT` bytes)."""
        with self._lock:
            if not self._eof:
                self._pump(0)
            return bytes(self._stderr).decode("utf-8", "replace")

    def poll(self) -> int | None:
        """The exit status if the process has ended, else None."""
        if self._channel.exit_status_ready():
            return self._channel.recv_exit_status()
        return None

    def _read_to_eof(self, deadline: float) -> bool:
        """Pump until the process's output ends; False if ``deadline`` passes first."""
        while not self._eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._pump(remaining)
        return True

    def wait(self, timeout: float) -> int:
        """Wait for the exit status (-1 if the connection dropped or no status was sent).

        Output that arrives meanwhile is kept for :meth:`readline` and :meth:`stderr`.
        Raises ``TimeoutError`` if the process is still running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._channel.exit_status_ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self.host}: `{_shown(self.command)}` still running after {timeout:g}s"
                    )
                if self._eof:
                    self._channel.status_event.wait(remaining)
                else:
                    self._pump(min(remaining, 0.5))
            # sshd may send the exit status before the last of the output: collect the rest
            self._read_to_eof(min(deadline, time.monotonic() + OUTPUT_GRACE))
        return self._channel.recv_exit_status()

    def drain(self) -> tuple[bytes, bytes]:
        """Take every byte of stdout and stderr received so far, without waiting."""
        with self._lock:
            channel = self._channel
            while channel.recv_ready() or channel.recv_stderr_ready():
                if channel.recv_ready():
                    self._stdout += channel.recv(_READ_SIZE)
                if channel.recv_stderr_ready():
                    self._stderr += channel.recv_stderr(_READ_SIZE)
            out, err = bytes(self._stdout), bytes(self._stderr)
            self._stdout.clear()
            self._stderr.clear()
            return out, err

    def close(self) -> None:
        """Close the channel (the process sees stdin close); idempotent."""
        self._channel.close()

    def __enter__(self) -> RemoteProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SSHHost:
    """One SSH connection to one inventory host, built from the host and the SSH defaults.

    Host fields win over ``defaults`` (user, key_file); ``known_hosts``, ``connect_timeout``
    and ``host_key_policy`` come from ``defaults``. Call :meth:`connect` (or use ``with``) before
    anything else; the object is safe to use from several threads once connected.
    """

    def __init__(
        self,
        host: Host,
        defaults: SSHDefaults | None = None,
        *,
        limiter: HandshakeLimiter | None = None,
    ) -> None:
        defaults = defaults if defaults is not None else SSHDefaults()
        self.name = host.name
        self.address = host.address
        self.port = host.port
        self.user = host.user or defaults.user
        key_file = host.key_file or defaults.key_file
        self.key_file = Path(key_file).expanduser() if key_file else None
        self.known_hosts = Path(defaults.known_hosts).expanduser()
        self.connect_timeout = defaults.connect_timeout
        self.host_key_policy = defaults.host_key_policy
        self.python = host.python
        self._limiter = limiter if limiter is not None else HANDSHAKE_LIMITER
        self._connection: Connection | None = None
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()
        self._bytes_uploaded = 0
        self.attempts = 0
        """Handshake attempts made by the last :meth:`connect` (1 unless retried)."""

    # --- connection ---------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """``address:port`` as shown in messages (IPv6 in brackets)."""
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{address}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._transport is not None and self._transport.is_active()

    def connect(self) -> SSHHost:
        """Open the connection (no-op if open); raises HostUnreachable, HostKeyRejected, ..."""
        if self.connected:
            return self
        if self._connection is not None:  # a connection that dropped: start afresh
            self.close()
        timeout = self.connect_timeout
        self.attempts = 0
        if self.key_file is not None and not self.key_file.is_file():
            # a local mistake: no handshake slot, socket or retry can mend it
            raise SSHAuthFailed(self.name, f"key file {self.key_file} does not exist")
        deadline: float | None = None
        delay_ceiling = RETRY_BASE_DELAY
        last_transient = ""
        while True:
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            with self._limiter.slot(wait) as acquired:
                if not acquired:
                    break
                if deadline is None:
                    deadline = time.monotonic() + timeout
                remaining = deadline - time.monotonic()
                if remaining < MIN_ATTEMPT_TIME and self.attempts > 0:
                    break
                self.attempts += 1
                try:
                    self._attempt(remaining)
                except _Transient as exc:
                    last_transient = exc.reason
                else:
                    return self
            assert deadline is not None  # noqa: S101 (set on the first pass through the slot)
            pause = random.uniform(0, delay_ceiling)  # noqa: S311 (jitter, not secrecy)
            delay_ceiling = min(delay_ceiling * 2, RETRY_MAX_DELAY)
            if deadline - time.monotonic() - pause < MIN_ATTEMPT_TIME:
                break
            time.sleep(pause)
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        raise HostUnreachable(
            self.name,
            f"cannot connect to {self.target} within {timeout:g}s{tries}: "
            f"{last_transient or 'no handshake slot became free'}",
        )

    def _unreachable(self, reason: str) -> HostUnreachable:
        return HostUnreachable(
            self.name, f"cannot connect to {self.target} within {self.connect_timeout:g}s: {reason}"
        )

    def _attempt(self, budget: float) -> None:
        """One TCP connect + SSH handshake + auth, all within ``budget`` seconds."""
        started = time.monotonic()
        try:
            sock = socket.create_connection((self.address, self.port), timeout=budget)
        except OSError as exc:
            raise self._unreachable(_socket_reason(exc)) from exc
        left = max(budget - (time.monotonic() - started), 0.01)
        watchdog = _Watchdog(sock, left)
        connect_kwargs: dict[str, Any] = {
            "sock": sock,
            "timeout": left,
            "banner_timeout": left,
            "auth_timeout": left,
            "channel_timeout": left,
        }
        if self.key_file is not None:
            connect_kwargs.update(
                key_filename=[str(self.key_file)], allow_agent=False, look_for_keys=False
            )
        connection = Connection(
            self.address,
            user=self.user,
            port=self.port,
            config=_fabric_config(),
            gateway=False,
            forward_agent=False,
            connect_kwargs=connect_kwargs,
        )
        client: paramiko.SSHClient = connection.client
        if self.known_hosts.is_file():
            try:
                client.get_host_keys().load(str(self.known_hosts))
            except (OSError, paramiko.SSHException, ValueError) as exc:
                watchdog.disarm()
                sock.close()
                raise HostKeyRejected(
                    self.name, f"cannot read known_hosts file {self.known_hosts}: {exc}"
                ) from exc
        policy: paramiko.MissingHostKeyPolicy = (
            _AcceptNewPolicy(self.known_hosts)
            if self.host_key_policy == "accept-new"
            else _StrictPolicy()
        )
        client.set_missing_host_key_policy(policy)
        try:
            connection.open()
        except BaseException as exc:
            intact = watchdog.disarm()
            with contextlib.suppress(Exception):
                connection.close()
            sock.close()
            if isinstance(exc, Exception):
                out_of_time = time.monotonic() >= started + budget - _DEADLINE_SLACK
                raise self._translate(exc, timed_out=not intact or out_of_time) from exc
            raise
        if not watchdog.disarm():
            connection.close()
            raise self._unreachable("no SSH handshake in time")
        transport = connection.transport
        assert transport is not None  # noqa: S101 (set by a successful open)
        transport.set_keepalive(KEEPALIVE_INTERVAL)
        self._connection = connection
        self._transport = transport

    def _translate(self, exc: Exception, *, timed_out: bool) -> Exception:
        """coord's error (or a retry marker) for a failed ``Connection.open``."""
        name = known_hosts_name(self.address, self.port)
        if isinstance(exc, _UnknownHostKey):
            return HostKeyRejected(
                self.name,
                f"unknown host key for {name} ({describe_key(exc.key)}); to accept it set "
                "`ssh.host_key_policy: accept-new` in the inventory or pass "
                "--accept-new-host-keys",
            )
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyRejected(
                self.name,
                f"host key for {name} has CHANGED: {self.known_hosts} holds "
                f"{describe_key(exc.expected_key)} but the host offers {describe_key(exc.key)}; "
                "someone may be intercepting the connection, or the host was reinstalled. "
                "A changed key is never accepted, not even with accept-new: if the change is "
                f"expected, remove the old key (ssh-keygen -R {shlex.quote(name)} -f "
                f"{shlex.quote(str(self.known_hosts))}) and accept the new one",
            )
        if timed_out:
            return self._unreachable("no SSH handshake in time")
        if isinstance(exc, paramiko.AuthenticationException) or (
            isinstance(exc, paramiko.SSHException)
            and "no authentication methods" in str(exc).lower()
        ):
            key = f"key {self.key_file}" if self.key_file else "the SSH agent and default keys"
            user = self.user or "the local user name"
            return SSHAuthFailed(self.name, f"{self.target} refused user {user} with {key}: {exc}")
        if _is_transient(exc):
            return _Transient(str(exc) or type(exc).__name__)
        if isinstance(exc, OSError):
            return self._unreachable(_socket_reason(exc))
        return self._unreachable(str(exc) or type(exc).__name__)

    def _require_transport(self) -> paramiko.Transport:
        transport = self._transport
        if transport is None or not transport.is_active():
            raise HostUnreachable(self.name, f"the SSH connection to {self.target} is closed")
        return transport

    def _open_session(self, timeout: float) -> paramiko.Channel:
        transport = self._require_transport()
        try:
            return transport.open_session(timeout=min(timeout, CHANNEL_OPEN_TIMEOUT))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostUnreachable(
                self.name, f"cannot open an SSH session on {self.target}: {exc}"
            ) from exc

    # --- commands -----------------------------------------------------------------------------

    def run(self, argv: Sequence[str], timeout: float = DEFAULT_COMMAND_TIMEOUT) -> tuple[str, str]:
        """Run ``argv`` on the host; return (stdout, stderr) once it exits 0.

        The command line is ``shlex.join(argv)``: every argument arrives verbatim, whatever it
        contains. A non-zero exit or a run longer than ``timeout`` raises RemoteCommandFailed.
        """
        if not argv:
            raise ValueError("argv must not be empty")
        command = shlex.join(argv)
        deadline = time.monotonic() + timeout
        channel = self._open_session(timeout)
        process = RemoteProcess(self.name, command, channel, stderr_limit=None)
        try:
            channel.exec_command(command)
            channel.shutdown_write()
            with process._lock:
                if not process._read_to_eof(deadline):
                    raise TimeoutError
            status = process.wait(max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise RemoteCommandFailed(
                self.name, f"`{_shown(command)}` did not finish within {timeout:g}s"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostUnreachable(
                self.name, f"lost the SSH connection while running `{_shown(command)}`: {exc}"
            ) from exc
        finally:
            stdout_bytes, stderr_bytes = process.drain()
            channel.close()
        stdout = stdout_bytes.decode("utf-8", "replace")
        stderr = stderr_bytes.decode("utf-8", "replace")
        if status != 0:
            how = f"exited {status}" if status > 0 else "ended without an exit status"
            if status < 0 and not self.connected:
                how = "was cut off (the SSH connection dropped)"
            detail = last_line(stderr)
            raise RemoteCommandFailed(
                self.name, f"`{_shown(command)}` {how}" + (f": {detail}" if detail else "")
            )
        return stdout, stderr

    def start(self, argv: Sequence[str], stdin_text: str = "") -> RemoteProcess:
        """Start ``argv`` on the host, send ``stdin_text`` to it and keep its stdin open."""
        if not argv:
            raise ValueError("argv must not be empty")
        command = shlex.join(argv)
        channel = self._open_session(CHANNEL_OPEN_TIMEOUT)
        try:
            channel.exec_command(command)
            if stdin_text:
                channel.sendall(stdin_text.encode("utf-8"))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            channel.close()
            raise HostUnreachable(self.name, f"cannot start `{_shown(command)}`: {exc}") from exc
        return RemoteProcess(self.name, command, channel)

    # --- files and tunnels --------------------------------------------------------------------

    @property
    def bytes_uploaded(self) -> int:
        """Bytes sent by :meth:`put` over this object's life."""
        return self._bytes_uploaded

    def sftp(self) -> paramiko.SFTPClient:
        """The connection's SFTP client (opened on first use)."""
        with self._lock:
            if self._sftp is None:
                self._require_transport()
                assert self._connection is not None  # noqa: S101
                try:
                    self._sftp = self._connection.sftp()
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    raise HostUnreachable(
                        self.name, f"cannot open SFTP on {self.target}: {exc}"
                    ) from exc
            return self._sftp

    def put(self, local_path: str | os.PathLike[str], remote_path: str) -> int:
        """Upload a file by SFTP; return the bytes transferred (also added to the counter)."""
        sftp = self.sftp()
        sent = 0

        def progress(done: int, _total: int) -> None:
            nonlocal sent
            sent = done

        try:
            sftp.put(os.fspath(local_path), remote_path, callback=progress, confirm=True)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise RemoteCommandFailed(
                self.name, f"cannot upload {local_path} to {remote_path}: {exc}"
            ) from exc
        finally:  # a failed upload still sent bytes
            with self._lock:
                self._bytes_uploaded += sent
        return sent

    def open_channel(self, port: int, remote_host: str = "127.0.0.1") -> paramiko.Channel:
        """A ``direct-tcpip`` channel to ``remote_host:port`` as seen from the host."""
        transport = self._require_transport()
        try:
            return transport.open_channel(
                "direct-tcpip",
                (remote_host, port),
                ("127.0.0.1", 0),
                timeout=CHANNEL_OPEN_TIMEOUT,
            )
        except paramiko.ChannelException as exc:
            raise AgentError(
                self.name, f"cannot open a tunnel to {remote_host}:{port} on the host: {exc.text}"
            ) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostUnreachable(
                self.name, f"cannot open a tunnel to {remote_host}:{port}: {exc}"
            ) from exc

    def close(self) -> None:
        """Close SFTP and the connection; idempotent."""
        with self._lock:
            sftp, self._sftp = self._sftp, None
            connection, self._connection = self._connection, None
            self._transport = None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def __enter__(self) -> SSHHost:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "closed"
        return f"<SSHHost {self.name} {self.user or ''}@{self.target} {state}>"


class _Transient(Exception):
    """A handshake failure worth retrying (sshd dropped us before the key exchange ended)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
