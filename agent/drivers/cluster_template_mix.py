"""Command templates (and any keyspace) over a Redis Cluster: each connection's batches hold
only requests whose key its primary serves.

Requests are drawn from the templates as against a single server (weights, keyspace,
distribution: :class:`agent.drivers.templates.Expander`); each goes to the queue of the primary
serving its first key argument's slot (:mod:`agent.drivers.cluster_templates`), a request
without a key to the primary whose connection asks. A connection takes ``pipeline`` requests
from its primary's queue, drawing more until there are enough; the other primaries' queues keep
what was drawn for them, up to :data:`QUEUE_BATCHES` batches each (beyond that a draw is dropped:
an independent sample, so the mix stays the same). A primary that no request reaches (every
template's keys on hash tags served elsewhere) would be drawn for forever: after
:data:`MAX_DRAWS` draws per request its connection takes another primary's requests, which are
redirected (``MOVED``) and followed, and show in ``redirects``.

A ``MOVED`` moves its slot at once; batches are encoded as they are sent (no pool).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Final

from agent.drivers.cluster_slots import SlotMap, key_slot
from agent.drivers.cluster_templates import check_templates, request_slot
from agent.drivers.resp import Batch, assemble_batch
from agent.drivers.templates import Expander, PreloadCommand

#: Batches of requests kept per primary for its connections.
QUEUE_BATCHES: Final = 16
#: Draws per request of a batch before a connection takes another primary's requests.
MAX_DRAWS: Final = 64

_Request = tuple[bytes, tuple[int, ...], tuple[Callable[[Any], bool] | None, ...]]
_SET: Final = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n%s"


class ClusterTemplateMix:
    """Per primary, a stream of template requests whose keys it serves."""

    def __init__(self, *, expander: Expander, pipeline: int, slots: SlotMap, key_prefix: str,
                 checks: bool, value_arg: bytes) -> None:
        templates = expander.templates
        located = check_templates(templates, key_prefix, "spec.params.templates")
        self.first_keys = [keys[0] if keys else None for keys in located]
        self.blocks = [template.block for template in templates]
        self.expander = expander
        self.pipeline = pipeline
        self.owner = list(slots.owner)
        self.nodes = slots.nodes
        self.queues: list[deque[_Request]] = [deque() for _ in slots.nodes]
        self.commands = expander.commands
        self._checks = checks
        self._value_arg = value_arg
        self._prefix = expander.keyspace.prefix.encode()

    def empty_nodes(self) -> list[int]:
        return []

    def stream(self, node: int) -> Callable[[], Batch]:
        """The ``next_batch`` of a connection to primary ``node``."""

        def next_batch() -> Batch:
            return self.encode_batch(node)

        return next_batch

    def encode_batch(self, node: int) -> Batch:
        mine = self.queues[node]
        wanted = self.pipeline
        expand = self.expander.expand_indexed
        limit = QUEUE_BATCHES * wanted
        draws = MAX_DRAWS * wanted
        while len(mine) < wanted and draws:
            draws -= 1
            index, payload, kinds, checks = expand()
            slot = request_slot(payload, self.first_keys[index], self.blocks[index])
            target = node if slot is None or self.owner[slot] < 0 else self.owner[slot]
            queue = self.queues[target]
            if target == node or len(queue) < limit:
                queue.append((payload, kinds, checks))
        while len(mine) < wanted:  # nothing reaches this primary: take another's requests
            mine.append(max(self.queues, key=len).popleft())
        return self._batch([mine.popleft() for _ in range(wanted)])

    def _batch(self, requests: list[_Request]) -> Batch:
        kinds: list[int] = []
        checks: list[Any] = []
        for _, request_kinds, request_checks in requests:
            kinds += request_kinds
            checks += request_checks
        return assemble_batch([payload for payload, _, _ in requests], kinds, checks,
                              len(self.commands), self._checks)

    def move(self, slot: int, node: int) -> bool:
        """Slot ``slot`` is now served by ``node``; whether that changed anything."""
        changed = self.owner[slot] != node
        self.owner[slot] = node
        return changed

    def preload_batches(self, node: int, first: int, end: int, size: int,
                        command: PreloadCommand | None = None) -> Iterator[tuple[int, bytes]]:
        """SET of the keys of ``[first, end)`` that ``node`` serves (or ``command`` for each):
        (count, payload) batches."""
        owner, prefix, value_arg = self.owner, self._prefix, self._value_arg
        if command is not None:
            numbers = [n for n in range(first, end) if owner[key_slot(prefix + b"%d" % n)] == node]
            for start in range(0, len(numbers), size):
                part = numbers[start:start + size]
                yield len(part), command.batch(part)
            return
        keys = [key for key in (prefix + b"%d" % n for n in range(first, end))
                if owner[key_slot(key)] == node]
        for start in range(0, len(keys), size):
            chunk = keys[start:start + size]
            yield len(chunk), b"".join(_SET % (len(key), key, value_arg) for key in chunk)
