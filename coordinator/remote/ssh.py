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

The module keeps the connection and the commands; its helpers each have one job:
:mod:`coordinator.remote.host_keys` (known_hosts and the missing-key policies),
:mod:`coordinator.remote.handshake` (the handshake limiter, retries and their deadline) and
:mod:`coordinator.remote.process` (:class:`RemoteProcess`). The operator's ``~/.ssh/config``
and fabric's own config files are never read: an inventory means the same thing on every
machine. The connect timeout counts from the moment the host first gets a handshake slot, so
hosts queued behind others are not failed for waiting their turn.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shlex
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import paramiko
from fabric import Connection

from coordinator.core.errors import (
    AgentError,
    HostKeyRejected,
    HostUnreachable,
    RemoteCommandFailed,
    SSHAuthFailed,
    last_line,
)
from coordinator.inventory.schema import Host, SSHDefaults
from coordinator.remote.handshake import (
    DEADLINE_SLACK,
    HANDSHAKE_LIMITER,
    KEEPALIVE_INTERVAL,
    MIN_ATTEMPT_TIME,
    RETRY_BASE_DELAY,
    RETRY_MAX_DELAY,
    HandshakeLimiter,
    Transient,
    Watchdog,
    fabric_config,
    is_transient,
    socket_reason,
)
from coordinator.remote.host_keys import (
    UnknownHostKey,
    describe_key,
    known_hosts_name,
    missing_key_policy,
)
from coordinator.remote.process import RemoteProcess, shown

__all__ = ["CHANNEL_OPEN_TIMEOUT", "DEFAULT_COMMAND_TIMEOUT", "RemoteProcess", "SSHHost"]
# RemoteProcess is re-exported: deploy and fleet take it from here with the SSHHost that makes it

DEFAULT_COMMAND_TIMEOUT = 60.0
"""Seconds a :meth:`SSHHost.run` command may take unless the caller says otherwise."""
CHANNEL_OPEN_TIMEOUT = 10.0
"""Seconds to wait for the server to open a session or direct-tcpip channel."""

logging.getLogger("paramiko").addHandler(logging.NullHandler())
# paramiko logs transport-thread errors (with tracebacks) that coord reports as its own errors;
# without a handler they would reach stderr through logging's last-resort handler.


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
                except Transient as exc:
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
            raise self._unreachable(socket_reason(exc)) from exc
        left = max(budget - (time.monotonic() - started), 0.01)
        watchdog = Watchdog(sock, left)
        try:
            connection = self._new_connection(sock, left)
        except HostKeyRejected:
            watchdog.disarm()
            sock.close()
            raise
        try:
            connection.open()
        except BaseException as exc:
            intact = watchdog.disarm()
            with contextlib.suppress(Exception):
                connection.close()
            sock.close()
            if isinstance(exc, Exception):
                out_of_time = time.monotonic() >= started + budget - DEADLINE_SLACK
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

    def _new_connection(self, sock: socket.socket, budget: float) -> Connection:
        """A fabric connection over ``sock``, known_hosts loaded and the key policy set."""
        left = budget
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
            config=fabric_config(),
            gateway=False,
            forward_agent=False,
            connect_kwargs=connect_kwargs,
        )
        client: paramiko.SSHClient = connection.client
        if self.known_hosts.is_file():
            try:
                client.get_host_keys().load(str(self.known_hosts))
            except (OSError, paramiko.SSHException, ValueError) as exc:
                raise HostKeyRejected(
                    self.name, f"cannot read known_hosts file {self.known_hosts}: {exc}"
                ) from exc
        client.set_missing_host_key_policy(
            missing_key_policy(self.host_key_policy, self.known_hosts)
        )
        return connection

    def _translate(self, exc: Exception, *, timed_out: bool) -> Exception:
        """coord's error (or a retry marker) for a failed ``Connection.open``."""
        name = known_hosts_name(self.address, self.port)
        if isinstance(exc, UnknownHostKey):
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
        if is_transient(exc):
            return Transient(str(exc) or type(exc).__name__)
        if isinstance(exc, OSError):
            return self._unreachable(socket_reason(exc))
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
            if not process.read_to_eof(deadline):
                raise TimeoutError
            status = process.wait(max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise RemoteCommandFailed(
                self.name, f"`{shown(command)}` did not finish within {timeout:g}s"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostUnreachable(
                self.name, f"lost the SSH connection while running `{shown(command)}`: {exc}"
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
                self.name, f"`{shown(command)}` {how}" + (f": {detail}" if detail else "")
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
            raise HostUnreachable(self.name, f"cannot start `{shown(command)}`: {exc}") from exc
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
