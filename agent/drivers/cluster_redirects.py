"""Following ``MOVED`` and ``ASK`` in a Redis Cluster, pure: which request of a pipelined batch
was redirected, what is sent again and where, and when to give up.

A request answered ``-MOVED slot host:port`` is sent again to that node (the slot map is
updated by the caller); one answered ``-ASK slot host:port`` is sent again to that node preceded
by ``ASKING`` (the slot map is not touched: the slot is migrating, the next request of that slot
still goes to its owner). The reply of the re-sent request may itself redirect; after
:data:`REDIRECT_LIMIT` redirections the request counts as an error of its own type,
:data:`ERROR_REDIRECT_LIMIT`.

The I/O (sending the request to a node and reading one reply) is the caller's, given to
:func:`follow` as a function, so that this module stays without I/O and testable with a fake
cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from agent.drivers.cluster_slots import Node, Redirection, parse_redirection

#: Redirections one request may follow before it counts as an error.
REDIRECT_LIMIT: Final = 5
#: The error type of a request redirected more than :data:`REDIRECT_LIMIT` times.
ERROR_REDIRECT_LIMIT: Final = "redirect_limit"
#: The two redirection kinds, as counted per interval (``IntervalData.redirects``).
MOVED: Final = "MOVED"
ASK: Final = "ASK"
#: ``ASKING``, sent before a request re-sent after an ``ASK``.
ASKING_COMMAND: Final = b"*1\r\n$6\r\nASKING\r\n"


def _line_end(payload: bytes, start: int) -> int:
    end = payload.find(b"\r\n", start)
    if end < 0:
        raise ValueError("a truncated RESP command")
    return end


def command_at(payload: bytes, position: int) -> bytes:
    """The ``position``-th command (from 0) of a batch's payload: RESP arrays of bulk strings,
    back to back, as :func:`agent.drivers.resp.encode_command` writes them. ValueError if the
    payload holds fewer commands or is not such arrays."""
    offset = 0
    for index in range(position + 1):
        start = offset
        if payload[offset : offset + 1] != b"*":
            raise ValueError(f"command {index} of the batch is not a RESP array")
        end = _line_end(payload, offset)
        count = int(payload[offset + 1 : end])
        offset = end + 2
        for _ in range(count):
            if payload[offset : offset + 1] != b"$":
                raise ValueError(f"command {index} of the batch has a non-bulk argument")
            end = _line_end(payload, offset)
            offset = end + 2 + int(payload[offset + 1 : end]) + 2
            if offset > len(payload):
                raise ValueError("a truncated RESP command")
        if index == position:
            return payload[start:offset]
    raise AssertionError("unreachable")


@dataclass
class Outcome:
    """Where following a request's redirections ended."""

    reply: Any
    """The final reply (an error reply when the limit was reached: the last redirection)."""
    redirects: dict[str, int] = field(default_factory=dict)
    """Redirections followed, by kind: each is one re-send of the request."""
    gave_up: bool = False
    """The limit was reached: the request counts as :data:`ERROR_REDIRECT_LIMIT`."""
    moved: list[Redirection] = field(default_factory=list)
    """Every ``MOVED`` seen, in order: the caller moves their slots."""


def follow(
    reply: Any,
    command: bytes,
    seed_host: str,
    send: Callable[[Node, bytes, int], Any],
    *,
    limit: int = REDIRECT_LIMIT,
) -> Outcome:
    """Follow the redirections of ``command`` whose reply was ``reply``.

    ``send(node, payload, replies)`` sends ``payload`` to ``node`` and returns the last of its
    ``replies`` replies (the command's, after ``ASKING``'s). A reply that is not a redirection
    ends it; so does the limit."""
    outcome = Outcome(reply)
    while True:
        redirection = parse_redirection(str(reply), seed_host) if _is_error(reply) else None
        if redirection is None:
            outcome.reply = reply
            return outcome
        if sum(outcome.redirects.values()) >= limit:
            outcome.reply = reply
            outcome.gave_up = True
            return outcome
        kind = redirection.kind
        outcome.redirects[kind] = outcome.redirects.get(kind, 0) + 1
        if kind == MOVED:
            outcome.moved.append(redirection)
            reply = send(redirection.node, command, 1)
        else:
            reply = send(redirection.node, ASKING_COMMAND + command, 2)


def _is_error(reply: Any) -> bool:
    """An error reply (hiredis's ``ReplyError``, or any exception instance in a test)."""
    return isinstance(reply, Exception)


def is_redirection(message: str) -> bool:
    """Whether an error reply's text is a ``MOVED`` or ``ASK``."""
    return message.startswith((MOVED + " ", ASK + " "))
