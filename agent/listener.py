"""The agent's TCP server: rpyc's ThreadedServer, made to outlast other local users.

Any local user can connect to the agent's loopback port. rpyc's server, as shipped, gives up
for good when ``accept()`` fails with anything but EINTR or EAGAIN: once the process is out of
file descriptors (EMFILE), it closes its listener and every client socket, coord's link
included. About a thousand idle connections (the common limit is 1,024 open files) were
enough. So :class:`AgentServer`:

* holds at most :data:`agent.protocol.MAX_UNAUTHENTICATED` connections that have not passed
  the token check yet; one more drops the oldest (its socket is shut down, so its thread sees
  the end of the stream and ends), which keeps descriptors and threads bounded;
* survives accept errors: on EMFILE and its kin it drops the oldest waiting connection, pauses
  briefly and accepts again. Only :meth:`close` ends the loop.

:func:`raise_file_limit` lifts the soft open-file limit to the hard one at start, so the
descriptors left over for coord's own work are as many as the host allows.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import resource
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from rpyc.utils.authenticators import AuthenticationError
from rpyc.utils.server import ThreadedServer

from agent import protocol
from agent.quietlog import QuietLog

log = logging.getLogger("agent.listener")

Authenticator = Callable[[socket.socket], tuple[socket.socket, Any]]

#: accept() errors that only mean "try again".
_TRANSIENT = frozenset({errno.EINTR, errno.EAGAIN, errno.ECONNABORTED, errno.EPROTO})
#: Pause after an accept() error that needs resources back (EMFILE, ENFILE, ENOBUFS...).
ACCEPT_RETRY_PAUSE = 0.02


def raise_file_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard limit; return (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard in (resource.RLIM_INFINITY, soft):
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, hard


class AgentServer(ThreadedServer):  # type: ignore[misc]  # rpyc ships no type hints
    """A ThreadedServer with a bound on unauthenticated connections and a resilient accept."""

    def __init__(self, service: object, *, authenticator: Authenticator, **options: Any) -> None:
        self._token_check = authenticator
        self._waiting: OrderedDict[socket.socket, None] = OrderedDict()
        self._waiting_lock = threading.Lock()
        self._closing = threading.Event()
        self._drop_log = QuietLog(log)
        self._error_log = QuietLog(log)
        super().__init__(service, authenticator=self._authenticate, **options)

    def accept(self) -> None:
        """Accept one connection and start its thread; retry on every error until closed."""
        while self.active:
            try:
                sock, _address = self.listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if not self.active:
                    return  # close() shut the listener down
                if exc.errno not in _TRANSIENT:
                    self._recover(exc)
                continue
            break
        else:
            return
        sock.setblocking(True)
        self.clients.add(sock)
        self._accept_method(sock)

    def _accept_method(self, sock: socket.socket) -> None:
        with self._waiting_lock:
            self._waiting[sock] = None
            excess = len(self._waiting) - protocol.MAX_UNAUTHENTICATED
            dropped = [self._waiting.popitem(last=False)[0] for _ in range(max(0, excess))]
        for old in dropped:
            self._drop(old, f"more than {protocol.MAX_UNAUTHENTICATED} waiting for their token")
        threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        # rpyc's own serving function asks the socket for its peer first, which fails once a
        # dropped connection is gone; the failure is expected and must not reach the log.
        try:
            self._authenticate_and_serve_client(sock)
        except OSError:
            with self._waiting_lock:
                self._waiting.pop(sock, None)

    def close(self) -> None:
        self._closing.set()
        super().close()

    def _authenticate(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        try:
            result = self._token_check(sock)
        finally:
            with self._waiting_lock:
                was_waiting = self._waiting.pop(sock, False) is None
        if not was_waiting:  # dropped while its token was checked: it stays dropped
            raise AuthenticationError("connection dropped before its token was checked")
        return result

    def _recover(self, exc: OSError) -> None:
        with self._waiting_lock:
            oldest = self._waiting.popitem(last=False)[0] if self._waiting else None
        self._error_log.warning(
            "accept failed (%s); %s", exc,
            "dropping the oldest unauthenticated connection" if oldest else "retrying",
        )
        if oldest is not None:
            self._drop(oldest, "accept() ran out of resources", quiet=True)
        self._closing.wait(ACCEPT_RETRY_PAUSE)

    def _drop(self, sock: socket.socket, why: str, *, quiet: bool = False) -> None:
        """End a connection still waiting for its token; its own thread closes the socket."""
        if not quiet:
            self._drop_log.warning("dropped the oldest unauthenticated connection: %s", why)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
