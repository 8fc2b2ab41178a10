"""Following ``MOVED`` and ``ASK`` in a Redis Cluster, pure: which request of a pipelined batch
was redirected, what is sent again and where, and when to give up.

A request answered ``-MOVED slot host:port`` is sent again to that node (the slot map is
updated by the caller); one answered ``-ASK slot host:port`` is sent again to that node preceded
by ``ASKING`` (the slot map is not touched: the slot is migrating, the next request of that slot
still goes to its owner). The reply of the re-sent request may itself redirect; after
:data:`REDIRECT_LIMIT` redirections the request counts as an error of its own type,
:data:`ERROR_REDIRECT_LIMIT`.

A request is one command, or a whole ``MULTI``/``EXEC`` block (:func:`request_span`): Redis
redirects a queued command (or ``EXEC`` itself, when a key moved meanwhile) and then discards
the transaction (``EXECABORT``), so the block is sent again whole, ``ASKING`` before its
``MULTI`` after an ``ASK`` (Redis keeps the flag for the whole transaction).

The I/O (sending the request to a node and reading one reply) is the caller's, given to
:func:`follow` as a function, so that this module stays without I/O and testable with a fake
cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from agent.drivers.cluster_slots import Node, Redirection, parse_redirection
from agent.drivers.templates import HIDDEN

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
    return commands_at(payload, position, 1)


def commands_at(payload: bytes, first: int, count: int) -> bytes:
    """Commands ``first`` to ``first + count - 1`` of a batch's payload, as one payload
    (:func:`command_at`'s rules)."""
    offset = start = 0
    for index in range(first + count):
        if index == first:
            start = offset
        if payload[offset : offset + 1] != b"*":
            raise ValueError(f"command {index} of the batch is not a RESP array")
        end = _line_end(payload, offset)
        words = int(payload[offset + 1 : end])
        offset = end + 2
        for _ in range(words):
            if payload[offset : offset + 1] != b"$":
                raise ValueError(f"command {index} of the batch has a non-bulk argument")
            end = _line_end(payload, offset)
            offset = end + 2 + int(payload[offset + 1 : end]) + 2
            if offset > len(payload):
                raise ValueError("a truncated RESP command")
    return payload[start:offset]


def request_span(kinds: Sequence[int], position: int) -> tuple[int, int]:
    """The request that reply ``position`` of a batch answers, as (its first reply, its reply
    count): the command itself, or the whole ``MULTI`` block around it (``MULTI``'s ``OK``, a
    ``QUEUED`` and ``EXEC``'s reply alike).

    ``kinds`` is the batch's (:class:`agent.drivers.resp.Batch`): a block's replies are
    :data:`~agent.drivers.templates.HIDDEN` but its last (``EXEC``'s, under the block's name),
    so a reply is in a block when it is hidden or follows a hidden one."""
    if kinds[position] != HIDDEN and (position == 0 or kinds[position - 1] != HIDDEN):
        return position, 1
    end = position
    while kinds[end] == HIDDEN:
        end += 1
    start = position
    while start > 0 and kinds[start - 1] == HIDDEN:
        start -= 1
    return start, end - start + 1


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
    request: bytes,
    seed_host: str,
    send: Callable[[Node, bytes, int], Sequence[Any]],
    *,
    replies: int = 1,
    limit: int = REDIRECT_LIMIT,
) -> Outcome:
    """Follow the redirections of ``request`` (one command, or a ``MULTI`` block of
    ``replies`` commands) whose reply was ``reply`` (for a block, the redirection among its).

    ``send(node, payload, count)`` sends ``payload`` to ``node`` and returns its ``count``
    replies; the one that matters is the first redirection among them, else the last (the
    command's, or ``EXEC``'s). A reply that is not a redirection ends it; so does the limit."""
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
            reply = decisive(send(redirection.node, request, replies))
        else:
            reply = decisive(send(redirection.node, ASKING_COMMAND + request, replies + 1))


def decisive(replies: Sequence[Any]) -> Any:
    """The reply that tells where a request stands: its first redirection (a queued command
    of a block redirected again), else its last."""
    for reply in replies:
        if _is_error(reply) and is_redirection(str(reply)):
            return reply
    return replies[-1]


def _is_error(reply: Any) -> bool:
    """An error reply (hiredis's ``ReplyError``, or any exception instance in a test)."""
    return isinstance(reply, Exception)


def is_redirection(message: str) -> bool:
    """Whether an error reply's text is a ``MOVED`` or ``ASK``."""
    return message.startswith((MOVED + " ", ASK + " "))
