"""Every constant and message format shared by the agent and the coordinator, in one place.

This module is pure (standard library only, no I/O) so that both sides import it: the agent in
its bundle, the coordinator from its own checkout. Timing constants are module-level names that
tests may shrink (``agent.protocol.AUTH_TIMEOUT = 0.5``); code reads them at the moment of use,
never copies them at import time.

The conversation, in order:

1. coordinator -> agent, on the agent's stdin, one line (:func:`encode_startup`)::

       {"token": "<hex>", "coordinator_version": "0.1.0", "rpyc_version": "6.0.2"}

2. agent -> coordinator, on the agent's stdout, exactly one line, then nothing
   (:func:`encode_ready` or, when the agent refuses to start, :func:`encode_startup_error`)::

       {"event": "ready", "port": 40123, "pid": 4242, "agent_version": "0.1.0",
        "python": "3.11.2", "rpyc_version": "6.0.2"}
       {"event": "error", "error": "version-mismatch", "message": "..."}

3. on every TCP connection to the agent, before any RPyC byte: the client sends one
   line (:func:`encode_auth_request`) and the agent answers one line
   (:func:`encode_auth_reply`); on anything but ``"status": "ok"`` the agent closes the socket.

4. RPyC, restricted to the agent service's named methods.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from typing import Final

#: Version of the messages above; both sides must speak the same one.
PROTOCOL_VERSION: Final = 1

# --- timings (seconds) -----------------------------------------------------------------------

#: How often the coordinator calls ``heartbeat()`` on each agent.
HEARTBEAT_INTERVAL = 2.0
#: Default watchdog period: with no authenticated call for this long, the agent shuts down.
DEFAULT_WATCHDOG = 15.0
#: Longest pause between two checks of the agent's supervisor loop (watchdog, signals).
SUPERVISOR_TICK = 0.5
#: Time a new TCP connection has to present its token line (and the client to get the reply).
AUTH_TIMEOUT = 5.0
#: Time the agent waits for the startup line on its stdin before giving up.
STARTUP_TIMEOUT = 30.0
#: Time a stopping agent gives its child processes between SIGTERM and SIGKILL.
CHILD_TERM_GRACE = 3.0
#: Time a stopping agent waits for the coordinator to acknowledge the close of its connections;
#: a coordinator cut off by the network never answers (rpyc alone would wait 30 s).
CLOSE_REPLY_TIMEOUT = 0.5
#: Default time the coordinator waits for the answer to one RPyC call.
REQUEST_TIMEOUT = 10.0
#: Window over which the agent logs at most :data:`REFUSAL_LOG_BURST` refused connections.
REFUSAL_LOG_WINDOW = 60.0

# --- sizes and formats -----------------------------------------------------------------------

#: Longest line accepted on stdin at startup and for the authentication request / reply.
MAX_LINE_BYTES = 1024
#: Bytes of randomness in a deployment token (the line carries it as hex: twice as many chars).
TOKEN_BYTES = 32
#: Shortest token the agent accepts, in hex characters (128 bits).
MIN_TOKEN_HEX = 32
#: Connections the agent holds before their token line; beyond it, the oldest is dropped.
MAX_UNAUTHENTICATED = 64
#: Refused connections logged per :data:`REFUSAL_LOG_WINDOW`; the rest are only counted.
REFUSAL_LOG_BURST = 20
#: Size at which the running agent rotates ``agent.log`` to ``agent.log.1`` (one is kept).
LOG_MAX_BYTES = 5 * 1024 * 1024

READY_EVENT: Final = "ready"
ERROR_EVENT: Final = "error"
READY_KEYS: Final = ("event", "port", "pid", "agent_version", "python", "rpyc_version")

STATUS_OK: Final = "ok"
STATUS_REFUSED: Final = "refused"
REASON_TOKEN: Final = "token"  # noqa: S105 (a reason code, not a secret)
REASON_VERSION: Final = "version"
REASON_MALFORMED: Final = "malformed"

ERROR_VERSION_MISMATCH: Final = "version-mismatch"
ERROR_BAD_STARTUP: Final = "bad-startup-line"
ERROR_STARTUP_FAILED: Final = "startup-failed"

#: Environment variable naming the bundle's content hash (``--bundle-hash`` wins over it).
BUNDLE_HASH_ENV: Final = "COORD_BUNDLE_HASH"
#: File names inside the agent's state directory.
LOG_FILE: Final = "agent.log"
PID_FILE: Final = "agent.pid"


class ProtocolError(ValueError):
    """A line that does not follow this module's formats."""


@dataclass(frozen=True)
class Versions:
    """The versions two sides compare: coord's own, and rpyc's (they share a wire format)."""

    coord: str
    rpyc: str

    def describe(self) -> str:
        return f"coord {self.coord}, rpyc {self.rpyc}"


def version_mismatch(side: str, mine: Versions, other_side: str, theirs: Versions) -> str:
    """The one line both sides print when versions differ, naming all four versions."""
    return (
        f"version mismatch: {side} runs {mine.describe()} but {other_side} runs "
        f"{theirs.describe()}; redeploy the agent bundle"
    )


# --- stdin startup line ----------------------------------------------------------------------


@dataclass(frozen=True)
class StartupRequest:
    token: str
    versions: Versions


def encode_startup(token: str, versions: Versions) -> bytes:
    return _line(
        {"token": token, "coordinator_version": versions.coord, "rpyc_version": versions.rpyc}
    )


def decode_startup(raw: bytes) -> StartupRequest:
    """Parse the stdin line. Versions are read first so a mismatch is reported as such."""
    fields = _object(raw)
    versions = Versions(
        coord=_text(fields, "coordinator_version"), rpyc=_text(fields, "rpyc_version")
    )
    token = _text(fields, "token")
    _no_extra(fields, {"token", "coordinator_version", "rpyc_version"})
    return StartupRequest(token=token, versions=versions)


def valid_token(token: str) -> bool:
    """A token is lower- or upper-case hex, at least :data:`MIN_TOKEN_HEX` characters."""
    return MIN_TOKEN_HEX <= len(token) <= MAX_LINE_BYTES // 2 and all(
        char in string.hexdigits for char in token
    )


# --- stdout ready / error line ---------------------------------------------------------------


def encode_ready(
    *, port: int, pid: int, agent_version: str, python: str, rpyc_version: str
) -> bytes:
    return _line(
        {
            "event": READY_EVENT,
            "port": port,
            "pid": pid,
            "agent_version": agent_version,
            "python": python,
            "rpyc_version": rpyc_version,
        }
    )


def encode_startup_error(error: str, message: str, **details: str) -> bytes:
    return _line({"event": ERROR_EVENT, "error": error, "message": message, **details})


# --- per-connection authentication -----------------------------------------------------------


@dataclass(frozen=True)
class AuthRequest:
    protocol: int
    token: str
    versions: Versions


@dataclass(frozen=True)
class AuthReply:
    status: str
    reason: str | None
    protocol: int | None
    versions: Versions | None

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


def encode_auth_request(token: str, versions: Versions) -> bytes:
    return _line(
        {
            "protocol": PROTOCOL_VERSION,
            "token": token,
            "coordinator_version": versions.coord,
            "rpyc_version": versions.rpyc,
        }
    )


def decode_auth_request(raw: bytes) -> AuthRequest:
    fields = _object(raw)
    protocol = fields.get("protocol")
    if type(protocol) is not int:
        raise ProtocolError("'protocol' must be an integer")
    request = AuthRequest(
        protocol=protocol,
        token=_text(fields, "token"),
        versions=Versions(
            coord=_text(fields, "coordinator_version"), rpyc=_text(fields, "rpyc_version")
        ),
    )
    _no_extra(fields, {"protocol", "token", "coordinator_version", "rpyc_version"})
    return request


def encode_auth_reply(
    status: str, reason: str | None = None, versions: Versions | None = None
) -> bytes:
    """The agent's answer. A token refusal carries nothing else: it tells a stranger nothing."""
    fields: dict[str, object] = {"status": status}
    if reason is not None:
        fields["reason"] = reason
    if versions is not None:
        fields.update(
            protocol=PROTOCOL_VERSION, agent_version=versions.coord, rpyc_version=versions.rpyc
        )
    return _line(fields)


def decode_auth_reply(raw: bytes) -> AuthReply:
    fields = _object(raw)
    status = _text(fields, "status")
    if status not in (STATUS_OK, STATUS_REFUSED):
        raise ProtocolError(f"unknown status {status!r}")
    reason = fields.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ProtocolError("'reason' must be a string")
    versions: Versions | None = None
    protocol: int | None = None
    if "agent_version" in fields:
        versions = Versions(
            coord=_text(fields, "agent_version"), rpyc=_text(fields, "rpyc_version")
        )
        raw_protocol = fields.get("protocol")
        if type(raw_protocol) is not int:
            raise ProtocolError("'protocol' must be an integer")
        protocol = raw_protocol
    if status == STATUS_OK and versions is None:
        raise ProtocolError("an 'ok' reply must carry the agent's versions")
    _no_extra(fields, {"status", "reason", "protocol", "agent_version", "rpyc_version"})
    return AuthReply(status=status, reason=reason, protocol=protocol, versions=versions)


# --- helpers ---------------------------------------------------------------------------------


def _line(fields: dict[str, object]) -> bytes:
    data = json.dumps(fields).encode() + b"\n"
    if len(data) > MAX_LINE_BYTES:
        raise ProtocolError(f"line of {len(data)} bytes exceeds {MAX_LINE_BYTES}")
    return data


def _object(raw: bytes) -> dict[str, object]:
    if len(raw) > MAX_LINE_BYTES:
        raise ProtocolError(f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not a JSON line: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("expected a JSON object")
    return value


def _text(fields: dict[str, object], key: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{key!r} must be a non-empty string")
    return value


def _no_extra(fields: dict[str, object], known: set[str]) -> None:
    extra = sorted(set(fields) - known)
    if extra:
        raise ProtocolError(f"unknown field(s): {', '.join(extra)}")


#: The rpyc protocol settings both ends of an agent link start from: deny by default. Neither
#: side may read, set or pickle anything of the other's, nor rebuild its exceptions.
DENY_BY_DEFAULT: Final[dict[str, object]] = {
    "allow_safe_attrs": False,
    "safe_attrs": frozenset(),
    "allow_exposed_attrs": False,  # the root's allowlist (_rpyc_getattr) is the only way in
    "allow_public_attrs": False,
    "allow_all_attrs": False,
    "allow_getattr": False,
    "allow_setattr": False,
    "allow_delattr": False,
    "allow_pickle": False,
    "import_custom_exceptions": False,
    "instantiate_custom_exceptions": False,
    "instantiate_oldstyle_exceptions": False,
    "propagate_SystemExit_locally": False,
    "include_local_traceback": False,  # errors carry type and message; tracebacks go to the log
    "include_local_version": False,
    "close_catchall": True,
}
