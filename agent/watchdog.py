"""Why an agent stops: the things that keep it alive, and the loop that notices when they end.

Three sources can end an agent, and the first one wins (its reason is logged):

* its standard input reaches end of file: the SSH session that started it is gone (the
  coordinator exited, was killed, or the network dropped) — :func:`start_stdin_watcher`;
* no authenticated RPyC request for the watchdog period — :meth:`Liveness.request_age`,
  checked by :func:`supervise`;
* an explicit request: ``stop()`` over RPyC, or SIGTERM / SIGINT / SIGHUP.

Signal handlers only record the signal (they run in the main thread, possibly while it holds a
lock, so they must not take one); :func:`supervise`, also in the main thread, turns the record
into a shutdown reason at its next tick.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from agent import protocol

Clock = Callable[[], float]


class Liveness:
    """Shared by the service (which touches it on every request) and the supervisor loop."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._last_request = clock()
        self._previous_request_age = 0.0
        self._last_heartbeat: float | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._reason: str | None = None
        self._signal: int | None = None

    def touch(self) -> None:
        """Record an authenticated request (any request feeds the watchdog)."""
        now = self._clock()
        self._previous_request_age = max(0.0, now - self._last_request)
        self._last_request = now

    def heartbeat(self) -> None:
        """Record an explicit ``heartbeat()`` call (reported by ``status()``)."""
        self._last_heartbeat = self._clock()

    def request_age(self) -> float:
        """Seconds since the last authenticated request (or since start): the watchdog's view."""
        return max(0.0, self._clock() - self._last_request)

    def previous_request_age(self) -> float:
        """How long the agent had gone without a request when the latest one arrived."""
        return self._previous_request_age

    def heartbeat_age(self) -> float | None:
        """Seconds since the last ``heartbeat()`` call; None if there was none yet."""
        if self._last_heartbeat is None:
            return None
        return max(0.0, self._clock() - self._last_heartbeat)

    def request_shutdown(self, reason: str) -> None:
        """Ask the agent to stop; the first reason given is the one kept. Never from a signal."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
        self._stopping.set()

    def note_signal(self, signum: int) -> None:
        """Safe inside a signal handler: a plain attribute store, no lock."""
        self._signal = signum

    def wait(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` seconds for a shutdown request; its reason, or None."""
        self._stopping.wait(timeout)
        return self._reason

    def pending_signal(self) -> int | None:
        return self._signal


def supervise(liveness: Liveness, watchdog: float) -> str:
    """Block (in the main thread) until the agent must stop; return why.

    Wakes at least every ``protocol.SUPERVISOR_TICK`` seconds (a quarter of a short watchdog),
    which costs nothing measurable on an idle agent.
    """
    tick = min(protocol.SUPERVISOR_TICK, watchdog / 4)
    while True:
        reason = liveness.wait(tick)
        if reason is not None:
            return reason
        signum = liveness.pending_signal()
        if signum is not None:
            liveness.request_shutdown(f"received {signal.Signals(signum).name}")
            continue
        age = liveness.request_age()
        if age > watchdog:
            liveness.request_shutdown(
                f"watchdog: no request from the coordinator for {age:.1f} s (limit {watchdog:g} s)"
            )


def install_signal_handlers(liveness: Liveness) -> None:
    """SIGTERM, SIGINT and SIGHUP all mean: stop cleanly. Main thread only."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        liveness.note_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, handler)


def start_stdin_watcher(liveness: Liveness, fd: int) -> threading.Thread:
    """Read ``fd`` until end of file (the SSH session ended), then ask for shutdown.

    Anything the coordinator writes after the startup line is read and ignored.
    """

    def watch() -> None:
        reason = "stdin closed: the coordinator's session ended"
        try:
            while os.read(fd, 4096):
                pass
        except OSError as exc:
            reason = f"stdin unreadable ({exc}): the coordinator's session ended"
        liveness.request_shutdown(reason)

    thread = threading.Thread(target=watch, name="stdin-watcher", daemon=True)
    thread.start()
    return thread


def read_startup_line(fd: int, timeout: float, limit: int) -> bytes:
    """Read one line from ``fd`` (raw, unbuffered, so nothing is lost to a later reader).

    Raises :class:`TimeoutError` after ``timeout`` seconds, :class:`EOFError` if the input ends
    first, :class:`ValueError` if the line exceeds ``limit`` bytes.
    """
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no startup line on stdin within {timeout:g} s")
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        # One byte at a time: the line is short, and whatever follows it belongs to the
        # stdin watcher, which must see the end of file itself.
        chunk = os.read(fd, 1)
        if not chunk:
            raise EOFError("stdin closed before the startup line")
        data += chunk
        if len(data) > limit:
            raise ValueError(f"startup line longer than {limit} bytes")
    return data
