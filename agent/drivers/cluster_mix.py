"""The SET/GET mix of :class:`agent.drivers.resp.RequestMix`, routed over a Redis Cluster.

Each connection is bound to one primary and sends only requests whose keys that primary
serves: a batch (``pipeline`` requests) never spans shards, so a pipelined batch is answered by
one node, as it would be by a single server. The keys ``key:0 .. key:K-1`` are sorted by hash
slot once (at prepare: a few µs per key in Python, 0.7 s for 100 000 keys on a busy 2-core VM;
about 50 bytes per key per load process); each primary draws its keys uniformly
from the slots it serves. Over the cluster the mix is then uniform per shard: shards with more
keys get no more connections (the connections are spread evenly over the primaries).

A ``MOVED`` reply moves its slot (and its keys) to the node it names at once (when that node
is one of the primaries known); the redirected request itself is sent again there, and an
``ASK``'s after ``ASKING``, by the load process (agent.drivers.cluster_redirects): an ``ASK``
changes nothing here (the migration is not over).
Batches are encoded as they are sent (no pool): slower than the single-server mix.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable, Iterator
from typing import Final

from agent.drivers.cluster_slots import SLOTS, SlotMap, key_slot
from agent.drivers.resp import EXPECTED_REPLIES_MAX_VALUE, Batch, RequestMix, expected_replies
from agent.drivers.templates import PreloadCommand, make_value


def key_name(n: int) -> bytes:
    """Key ``n`` under the default prefix (a cluster's mix keeps the default keyspace)."""
    return b"key:%d" % n


_GET: Final = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n"
_SET: Final = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n%s"


class ClusterMix:
    """Per primary, a request stream of keys it serves; slots move on ``MOVED``."""

    def __init__(self, *, keyspace: int, set_ratio: float, value_size: int, pipeline: int,
                 seed: int, slots: SlotMap) -> None:
        self.pipeline = pipeline
        self.set_ratio = set_ratio
        self.owner = list(slots.owner)
        self.nodes = slots.nodes
        self._random = random.Random(seed).random  # noqa: S311 (a load, not a secret)
        self._value_arg = b"$%d\r\n%s\r\n" % (value_size, make_value(value_size))
        self._expect_replies = value_size <= EXPECTED_REPLIES_MAX_VALUE
        self.by_slot: list[list[int]] = [[] for _ in range(SLOTS)]
        self.slot_of = array("H", bytes(2 * keyspace))  # 2 bytes a key
        for n in range(keyspace):
            slot = key_slot(key_name(n))
            self.slot_of[n] = slot
            self.by_slot[slot].append(n)
        self.keys: list[list[int]] = [self._keys_of(index) for index in range(len(self.nodes))]

    def _keys_of(self, node: int) -> list[int]:
        owner, by_slot = self.owner, self.by_slot
        return [n for slot in range(SLOTS) if owner[slot] == node for n in by_slot[slot]]

    def empty_nodes(self) -> list[int]:
        return [index for index, keys in enumerate(self.keys) if not keys]

    def stream(self, node: int) -> Callable[[], Batch]:
        """The ``next_batch`` of a connection to primary ``node``."""

        def next_batch() -> Batch:
            return self.encode_batch(node)

        return next_batch

    def encode_batch(self, node: int) -> Batch:
        keys = self.keys[node]
        if not keys:  # every slot of this node moved away: send what the cluster says
            keys = next(k for k in self.keys if k)
        rnd = self._random
        count = len(keys)
        ratio = self.set_ratio
        value_arg = self._value_arg
        parts = []
        kinds = []
        for _ in range(self.pipeline):
            key = b"key:%d" % keys[int(rnd() * count)]
            if rnd() < ratio:
                parts.append(_SET % (len(key), key, value_arg))
                kinds.append(RequestMix.SET)
            else:
                parts.append(_GET % (len(key), key))
                kinds.append(RequestMix.GET)
        sets = sum(kinds)
        return Batch(b"".join(parts), tuple(kinds), (len(kinds) - sets, sets), None,
                     expected_replies(kinds, value_arg) if self._expect_replies else None)

    def move(self, slot: int, node: int) -> bool:
        """Slot ``slot`` is now served by ``node``; whether that changed anything."""
        previous = self.owner[slot]
        if previous == node:
            return False
        self.owner[slot] = node
        if previous >= 0:  # one pass over its keys: a few ms for 100 000 keys, once a slot
            slot_of = self.slot_of
            self.keys[previous] = [n for n in self.keys[previous] if slot_of[n] != slot]
        self.keys[node] = self.keys[node] + self.by_slot[slot]
        return True

    def preload_batches(self, node: int, first: int, end: int, size: int,
                        command: PreloadCommand | None = None) -> Iterator[tuple[int, bytes]]:
        """SET of the keys of ``[first, end)`` that ``node`` serves (or ``command`` for each):
        (count, payload) batches."""
        value_arg = self._value_arg
        mine = [n for n in self.keys[node] if first <= n < end]
        mine.sort()
        for start in range(0, len(mine), size):
            if command is not None:
                numbers = mine[start:start + size]
                yield len(numbers), command.batch(numbers)
                continue
            chunk = [key_name(n) for n in mine[start:start + size]]
            yield len(chunk), b"".join(_SET % (len(key), key, value_arg) for key in chunk)
