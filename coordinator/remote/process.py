"""A long-lived command on a host over one SSH exec channel, its stdin the process's lifeline."""

from __future__ import annotations

import contextlib
import select
import threading
import time
from types import TracebackType

import paramiko

OUTPUT_GRACE = 1.0
"""Seconds :meth:`RemoteProcess.wait` keeps reading output that trails the exit status."""
STDERR_KEPT = 64 * 1024
"""Bytes of a remote process's standard error kept for error messages."""
_READ_SIZE = 65536
_SHOWN_COMMAND = 120


def shown(command: str) -> str:
    """``command`` cut to a length that fits in one message."""
    return command if len(command) <= _SHOWN_COMMAND else command[: _SHOWN_COMMAND - 1] + "…"


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
                        f"{self.host}: no output line from `{shown(self.command)}` "
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

    def read_to_eof(self, deadline: float) -> bool:
        """Hold the process's lock and pump until its output ends; False if ``deadline`` passes."""
        with self._lock:
            return self._read_to_eof(deadline)

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
                        f"{self.host}: `{shown(self.command)}` still running after {timeout:g}s"
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
