"""Redis Cluster routing, pure: a key's hash slot, the slot map from ``CLUSTER SHARDS`` or
``CLUSTER SLOTS``, and ``MOVED``/``ASK`` redirections.

A key's slot is CRC16 (the XMODEM variant: polynomial 0x1021, initial value 0) of the key,
modulo 16384; when the key holds ``{`` followed later by ``}`` with at least one byte between,
only the bytes between the first ``{`` and the next ``}`` are hashed (a hash tag: keys sharing
one land on the same slot). This is the algorithm of the Redis Cluster specification.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

SLOTS: Final = 16384


def _crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_TABLE: Final = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16-XMODEM of ``data`` (``crc16(b"123456789") == 0x31C3``)."""
    crc = 0
    table = _TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFF00) ^ table[((crc >> 8) ^ byte) & 0xFF]
    return crc


def hash_tag(key: bytes) -> bytes:
    """The part of ``key`` that is hashed: its hash tag when it has a non-empty one."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slot(key: bytes) -> int:
    """The hash slot of ``key``, as ``CLUSTER KEYSLOT`` gives it."""
    return crc16(hash_tag(key)) % SLOTS


@dataclass(frozen=True)
class Node:
    """A primary of the cluster, as the load connects to it."""

    host: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SlotMap:
    """Which primary serves each slot: ``owner[slot]`` is an index into ``nodes`` (-1: none)."""

    nodes: tuple[Node, ...]
    owner: tuple[int, ...]

    def uncovered(self) -> int:
        return sum(1 for index in self.owner if index < 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(entry: Any) -> dict[str, Any]:
    """A RESP2 flat list ``[k1, v1, k2, v2...]`` or a RESP3 map, as a dict with str keys."""
    if isinstance(entry, Mapping):
        return {_text(key): value for key, value in entry.items()}
    items = list(entry)
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _build(ranges: Sequence[tuple[int, int, Node]]) -> SlotMap:
    nodes: list[Node] = []
    owner = [-1] * SLOTS
    for first, last, node in ranges:
        if node not in nodes:
            nodes.append(node)
        index = nodes.index(node)
        for slot in range(max(0, first), min(SLOTS - 1, last) + 1):
            owner[slot] = index
    return SlotMap(tuple(nodes), tuple(owner))


def _node_host(fields: Mapping[str, Any], seed_host: str) -> str:
    """A node's address: its ``ip`` (``endpoint`` when it is a name); the seed's host when the
    node reports none (``?`` or empty: the node does not know its own address)."""
    for name in ("ip", "endpoint"):
        value = fields.get(name)
        if value is not None and _text(value) not in ("", "?"):
            return _text(value)
    return seed_host


def from_shards(reply: Any, seed_host: str) -> SlotMap:
    """The slot map from a ``CLUSTER SHARDS`` reply (Redis 7+): per shard its ``slots``
    (a flat list of range bounds) and ``nodes``, the ``master`` among them serving them."""
    ranges: list[tuple[int, int, Node]] = []
    for shard in reply:
        fields = _pairs(shard)
        primary = None
        for raw in fields.get("nodes", []):
            node = _pairs(raw)
            if _text(node.get("role", "")) == "master" and _text(node.get("health", "online")) \
                    != "fail":
                port = int(node.get("port") or node.get("tls-port") or 0)
                primary = Node(_node_host(node, seed_host), port)
        bounds = [int(value) for value in fields.get("slots", [])]
        if primary is None:
            continue
        ranges += [(bounds[i], bounds[i + 1], primary) for i in range(0, len(bounds) - 1, 2)]
    return _build(ranges)


def from_slots(reply: Any, seed_host: str) -> SlotMap:
    """The slot map from a ``CLUSTER SLOTS`` reply: ``[first, last, [host, port, id], ...]``,
    the first node the primary."""
    ranges = []
    for entry in reply:
        first, last, primary = int(entry[0]), int(entry[1]), entry[2]
        host = _text(primary[0]) if primary[0] not in (None, b"", "", b"?") else seed_host
        ranges.append((first, last, Node(host, int(primary[1]))))
    return _build(ranges)


@dataclass(frozen=True)
class Redirection:
    """A ``MOVED`` or ``ASK`` error reply: the slot and the node to ask instead."""

    kind: str
    slot: int
    node: Node


def parse_redirection(message: str, seed_host: str) -> Redirection | None:
    """``MOVED 3999 127.0.0.1:6381`` (or ``ASK ...``), else None. An empty host (a node that
    does not know its address) is the seed's host."""
    words = message.split()
    if len(words) != 3 or words[0] not in ("MOVED", "ASK"):
        return None
    host, _, port = words[2].rpartition(":")
    try:
        slot, port_number = int(words[1]), int(port)
    except ValueError:
        return None
    if not 0 <= slot < SLOTS:
        return None
    return Redirection(words[0], slot, Node(host.strip("[]") or seed_host, port_number))
