"""The error every load driver speaks: a kind and a one-line message for a user."""

from __future__ import annotations

from typing import Final

#: DriverError kinds (a driver may use others; these are the common ones).
KIND_CONFIG: Final = "config"  # the spec asks for something impossible or unsupported
KIND_UNREACHABLE: Final = "unreachable"  # no TCP connection to the target
KIND_AUTH: Final = "auth"  # the target refused our credentials, or wants some
KIND_SERVER: Final = "server"  # the target answered an error where the driver needs success
KIND_STATE: Final = "state"  # a call out of order (start before prepare, report while running)
KIND_WORKER: Final = "worker"  # a load process failed or vanished
KIND_TOOL: Final = "tool"  # an external load tool failed itself (crash, signal, its output)
KIND_MEMORY: Final = "memory"  # the host has not the memory the load would need
KIND_INTERNAL: Final = "internal"  # a bug


class DriverError(Exception):
    """A failure the user can understand: ``kind`` (see ``KIND_*``) and a one-line ``message``.

    ``str()`` is ``"kind: message"``; that is also what crosses RPyC as the exception's only
    argument (with ``kind`` and ``message`` as attributes), so the coordinator can show it.
    """

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        self.message = " ".join(message.split())  # one line, always
        super().__init__(f"{kind}: {self.message}")
