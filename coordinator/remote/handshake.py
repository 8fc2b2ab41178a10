"""Handshakes: how many run at once, which failures are worth a retry, and their deadline.

sshd's ``MaxStartups`` drops unauthenticated connections beyond its limit; they show up as
"Error reading SSH protocol banner" or an EOF during negotiation. A process-wide
:class:`HandshakeLimiter` (default :data:`MAX_CONCURRENT_HANDSHAKES`) bounds the handshakes in
flight and such transient failures are retried with full jitter (:class:`Transient`, raised by
the connection attempt), all within the host's connect timeout. A :class:`Watchdog` shuts the
socket down when an attempt's budget runs out, so no blocking read outlives it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

import paramiko
from fabric import Config
from paramiko.config import SSHConfig

MAX_CONCURRENT_HANDSHAKES = 8
"""Handshakes in flight per coordinator process (OpenSSH's default MaxStartups starts at 10)."""
RETRY_BASE_DELAY = 0.05
"""First back-off ceiling (seconds) after a transient handshake failure; doubles each time."""
RETRY_MAX_DELAY = 1.0
"""Largest back-off ceiling (seconds) between two handshake attempts."""
MIN_ATTEMPT_TIME = 0.2
"""No new handshake attempt is started with less than this left of the connect timeout."""
"""Seconds to wait for the server to open a session or direct-tcpip channel."""
KEEPALIVE_INTERVAL = 15
"""Seconds between SSH keepalive messages on an idle connection."""
DEADLINE_SLACK = 0.05
"""Seconds before the budget's end at which a failed handshake counts as timed out."""

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


def fabric_config() -> Config:
    """A fabric config that reads no file at all: no ssh_config, no fabric.yaml."""
    return Config(lazy=True, ssh_config=SSHConfig(), overrides={"load_ssh_configs": False})


def is_transient(exc: BaseException) -> bool:
    """Whether a handshake failure looks like sshd dropping us (MaxStartups), worth a retry."""
    if isinstance(exc, EOFError | ConnectionResetError | BrokenPipeError):
        return True
    if isinstance(exc, paramiko.SSHException) and not isinstance(
        exc, paramiko.AuthenticationException | paramiko.BadHostKeyException
    ):
        text = str(exc).lower()
        return any(message in text for message in _TRANSIENT_MESSAGES)
    return False


def socket_reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the address ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


class Watchdog:
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


class Transient(Exception):
    """A handshake failure worth retrying (sshd dropped us before the key exchange ended)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
