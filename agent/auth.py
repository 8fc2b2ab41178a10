"""The token check every TCP connection passes before a single RPyC byte is read.

rpyc's server calls the authenticator in the connection's own thread, with the raw socket. The
client must send one line (``agent.protocol.encode_auth_request``) within
``protocol.AUTH_TIMEOUT`` seconds and then wait for the agent's one-line answer; only after an
``ok`` does RPyC start on the socket. Anything else — silence, junk, a line too long, bytes sent
ahead of the answer, a wrong token, other versions — gets a ``refused`` line (when the socket
still works) and a closed socket. The token is compared in constant time.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
import time

from rpyc.utils.authenticators import AuthenticationError

from agent import protocol
from agent.quietlog import QuietLog

log = logging.getLogger("agent.auth")
#: Anyone on the host can be refused at will: the log must not grow at their pace.
refusals = QuietLog(log)


class TokenAuthenticator:
    """An rpyc ``authenticator``: ``(sock) -> (sock, credentials)`` or AuthenticationError."""

    def __init__(self, token: str, versions: protocol.Versions) -> None:
        self._token = token.encode("ascii")
        self._versions = versions

    def __call__(self, sock: socket.socket) -> tuple[socket.socket, str]:
        try:
            peer = sock.getpeername()
        except OSError:
            peer = "?"
        try:
            return self._check(sock)
        except AuthenticationError as exc:
            refusals.warning("refused connection from %s: %s", peer, exc)
            raise

    def _check(self, sock: socket.socket) -> tuple[socket.socket, str]:
        try:
            line = _read_line(sock, protocol.AUTH_TIMEOUT, protocol.MAX_LINE_BYTES)
        except (OSError, EOFError, ValueError) as exc:
            self._refuse(sock, protocol.REASON_MALFORMED)
            raise AuthenticationError(f"no valid token line: {exc}") from None
        try:
            request = protocol.decode_auth_request(line)
        except protocol.ProtocolError as exc:
            self._refuse(sock, protocol.REASON_MALFORMED)
            raise AuthenticationError(f"malformed token line: {exc}") from None
        if not hmac.compare_digest(request.token.encode("utf-8"), self._token):
            self._refuse(sock, protocol.REASON_TOKEN)
            raise AuthenticationError("wrong token")
        if request.protocol != protocol.PROTOCOL_VERSION or request.versions != self._versions:
            # The token proved the client is ours: it may learn our versions.
            self._refuse(sock, protocol.REASON_VERSION, self._versions)
            raise AuthenticationError(
                protocol.version_mismatch("agent", self._versions, "client", request.versions)
            )
        try:
            sock.sendall(protocol.encode_auth_reply(protocol.STATUS_OK, versions=self._versions))
            sock.settimeout(None)
        except OSError as exc:
            raise AuthenticationError(f"client left during the handshake: {exc}") from None
        return sock, "coordinator"

    @staticmethod
    def _refuse(
        sock: socket.socket, reason: str, versions: protocol.Versions | None = None
    ) -> None:
        # If the peer is gone already there is no one to tell; the server closes the socket next.
        with contextlib.suppress(OSError):
            sock.sendall(protocol.encode_auth_reply(protocol.STATUS_REFUSED, reason, versions))


def _read_line(sock: socket.socket, timeout: float, limit: int) -> bytes:
    """One line, within ``timeout`` seconds overall (not per byte: no slow-drip), at most
    ``limit`` bytes, and nothing after it: the client must wait for our answer."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no token line within {timeout:g} s")
        sock.settimeout(remaining)
        chunk = sock.recv(limit + 1 - len(data))
        if not chunk:
            raise EOFError("connection closed before the token line")
        data += chunk
        if len(data) > limit:
            raise ValueError(f"token line longer than {limit} bytes")
    line, _, rest = data.partition(b"\n")
    if rest:
        raise ValueError("data sent before the agent answered the token line")
    return line
