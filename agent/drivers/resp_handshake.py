"""What a new RESP connection sends before its load: AUTH, HELLO 3, SELECT. Pure.

Every connection, at prepare and at each reconnection, sends these commands at once and reads
one reply per command before it carries load; an error reply to any of them refuses the
connection (at prepare: a one-line ``DriverError`` naming the command).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.drivers.resp import auth_command, encode_command
from agent.drivers.spec import Target

#: RESP versions a target may speak (``HELLO 3`` switches a connection to RESP3).
PROTOCOLS = (2, 3)


@dataclass(frozen=True)
class Handshake:
    """The commands a new connection sends, as one payload, and their names (for errors)."""

    payload: bytes
    commands: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.commands)


def handshake(target: Target, *, ping: bool) -> Handshake:
    """AUTH (a password, with the ACL user when there is one), ``HELLO 3`` for RESP3, ``SELECT``
    for a database other than 0, then PING when ``ping`` (at prepare: the target answers
    commands at all). AUTH comes first: ``HELLO`` on a server with a password needs it."""
    parts: list[bytes] = []
    names: list[str] = []
    auth = auth_command(target.username, target.password)
    if auth is not None:
        parts.append(auth)
        names.append("AUTH")
    if target.protocol == 3:
        parts.append(encode_command("HELLO", 3))
        names.append("HELLO")
    if target.db:
        parts.append(encode_command("SELECT", target.db))
        names.append("SELECT")
    if ping:
        parts.append(encode_command("PING"))
        names.append("PING")
    return Handshake(b"".join(parts), tuple(names))
