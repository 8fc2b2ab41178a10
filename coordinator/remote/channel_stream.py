"""The byte stream under the agent's RPyC link: a socket or a paramiko channel, as rpyc wants.

Used by :mod:`coordinator.remote.agent_link`, which reads the handshake line with
:meth:`ChannelStream.read_line` before handing the same stream to rpyc.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Protocol

from rpyc.core import consts
from rpyc.core.stream import Stream


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
