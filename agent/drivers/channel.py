"""Messages between the agent and its load processes: JSON objects, one per line, over a
Unix socket pair (no pickle: both ends parse what they receive).

Each message has a ``"type"``. Agent -> worker: ``configure`` (first, once), ``start``,
``stop``. Worker -> agent: ``ready`` or ``error`` (answer to ``configure``), ``started``,
one per finished interval: ``interval_counts`` (the builtin and http drivers' load processes:
raw latency counts the agent encodes, agent/drivers/kit/counted.py) or ``interval`` (encoded
already: an external tool's parsed output), ``finished``, ``error`` (a failure); the builtin
driver's ``preloaded`` (keys and seconds of its preload, before ``ready``: logged).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from typing import Any, Final

#: Longest message line accepted. An interval's raw latency counts take 8 bytes per distinct
#: latency (16 once one is beyond 32 bits), base64: kilobytes usually, but an open loop queued
#: behind a long stall gives each queued request its own latency, so a long interval can carry
#: millions (agent/drivers/kit/counted.py).
MAX_MESSAGE_BYTES: Final = 256 * 1024 * 1024
_CHUNK = 65536


class ChannelClosed(EOFError):
    """The other end closed the channel (or it broke)."""


class Channel:
    """One end of a JSON-lines socket. ``send`` is thread-safe; one thread receives."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()  # (appended to in place: a long line costs no copies)
        self._lines: list[bytes] = []
        self._send_lock = threading.Lock()
        self._closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError as exc:
                raise ChannelClosed(f"cannot send: {exc}") from exc

    def receive(self) -> dict[str, Any]:
        """The next message; blocks on the socket unless one is buffered."""
        while not self._lines:
            self.read_available()
        return self._decode(self._lines.pop(0))

    def read_available(self) -> None:
        """One ``recv`` (blocks if nothing is there); complete lines are buffered."""
        try:
            chunk = self.sock.recv(_CHUNK)
        except OSError as exc:
            raise ChannelClosed(f"cannot receive: {exc}") from exc
        if not chunk:
            raise ChannelClosed("the other end closed the channel")
        if b"\n" in chunk:
            *lines, rest = (bytes(self._buffer) + chunk).split(b"\n")
            self._buffer = bytearray(rest)
            self._lines.extend(lines)
        else:
            self._buffer += chunk
        if len(self._buffer) > MAX_MESSAGE_BYTES:
            raise ChannelClosed("message too long")

    def take(self) -> list[dict[str, Any]]:
        """Every buffered message (possibly none), without reading the socket."""
        lines, self._lines = self._lines, []
        return [self._decode(line) for line in lines]

    def shutdown_write(self) -> None:
        """Tell the other end there is nothing more to read (it sees end of file)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    @staticmethod
    def _decode(line: bytes) -> dict[str, Any]:
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise ChannelClosed(f"not a message: {line[:80]!r}") from exc
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ChannelClosed(f"not a message: {line[:80]!r}")
        return message
