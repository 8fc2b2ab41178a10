"""Redis Cluster routing, pure: CRC16-XMODEM, hash tags, the slot map from CLUSTER SHARDS and
CLUSTER SLOTS replies (RESP2 and RESP3 shapes), MOVED/ASK parsing, and the per-primary mix."""

from __future__ import annotations

import hiredis
from hypothesis import given
from hypothesis import strategies as st

from agent.drivers.cluster_mix import ClusterMix
from agent.drivers.cluster_slots import (
    SLOTS,
    Node,
    SlotMap,
    crc16,
    from_shards,
    from_slots,
    hash_tag,
    key_slot,
    parse_redirection,
)
from agent.drivers.resp import RequestMix
from agent.drivers.templates import make_value


def test_crc16_is_the_xmodem_variant() -> None:
    assert crc16(b"123456789") == 0x31C3  # the check value of CRC-16/XMODEM
    assert crc16(b"") == 0


def test_key_slots_match_the_redis_documentation() -> None:
    assert key_slot(b"somekey") == 11058  # CLUSTER KEYSLOT somekey
    assert key_slot(b"foo{hash_tag}") == 2515  # CLUSTER KEYSLOT foo{hash_tag}
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers")
    assert key_slot(b"{user1000}.following") == key_slot(b"user1000")


def test_hash_tags_follow_the_specification() -> None:
    assert hash_tag(b"{user1000}.following") == b"user1000"
    assert hash_tag(b"foo{}{bar}") == b"foo{}{bar}"  # an empty first tag: the whole key
    assert hash_tag(b"foo{{bar}}zap") == b"{bar"  # from the first { to the next }
    assert hash_tag(b"foo{bar}{zap}") == b"bar"  # only the first tag
    assert hash_tag(b"no}tag{") == b"no}tag{"


@given(st.binary(max_size=40), st.binary(min_size=1, max_size=10).filter(lambda t: b"}" not in t))
def test_keys_sharing_a_tag_share_a_slot(prefix: bytes, tag: bytes) -> None:
    prefix = prefix.replace(b"{", b"")
    assert key_slot(prefix + b"{" + tag + b"}x") == key_slot(tag) < SLOTS


def test_the_slot_map_from_cluster_shards_in_resp2_and_resp3() -> None:
    def node(port: int, role: str) -> list[object]:
        return [b"id", b"abc", b"port", port, b"ip", b"10.0.0.1", b"endpoint", b"10.0.0.1",
                b"role", role.encode(), b"health", b"online"]

    shards = [
        [b"slots", [0, 5460], b"nodes", [node(7000, "master"), node(7003, "replica")]],
        [b"slots", [5461, 10922], b"nodes", [node(7001, "master")]],
        [b"slots", [10923, 16383], b"nodes", [node(7002, "master")]],
    ]
    resp2 = from_shards(shards, "seed")
    assert resp2.nodes == (Node("10.0.0.1", 7000), Node("10.0.0.1", 7001), Node("10.0.0.1", 7002))
    owner = resp2.owner
    assert (owner[0], owner[5460], owner[5461], owner[16383]) == (0, 0, 1, 2)
    assert resp2.uncovered() == 0
    resp3 = from_shards([{b"slots": s[1], b"nodes": [dict(zip(n[::2], n[1::2], strict=True))
                                                      for n in s[3]]} for s in shards], "seed")
    assert resp3 == resp2


def test_the_slot_map_from_cluster_slots_and_a_node_without_an_address() -> None:
    reply = [[0, 8191, [b"", 7000, b"id0"]], [8192, 16000, [b"10.0.0.2", 7001, b"id1"]]]
    slots = from_slots(reply, "seed")
    assert slots.nodes == (Node("seed", 7000), Node("10.0.0.2", 7001))
    assert slots.uncovered() == 16383 - 16000


def test_redirections_are_parsed() -> None:
    moved = parse_redirection("MOVED 3999 127.0.0.1:6381", "seed")
    assert moved is not None
    assert (moved.kind, moved.slot, moved.node) == ("MOVED", 3999, Node("127.0.0.1", 6381))
    ask = parse_redirection("ASK 1 :7002", "seed")
    assert ask is not None and ask.node == Node("seed", 7002)
    assert parse_redirection("MOVED 99999 h:1", "seed") is None
    assert parse_redirection("ERR nope", "seed") is None


def test_each_primary_gets_only_its_keys_and_a_moved_slot_follows() -> None:
    owner = tuple(0 if slot < SLOTS // 2 else 1 for slot in range(SLOTS))
    slots = SlotMap((Node("h", 1), Node("h", 2)), owner)
    mix = ClusterMix(keyspace=500, set_ratio=0.5, value_size=8, pipeline=16, seed=1, slots=slots)
    for node in (0, 1):
        for _ in range(20):
            payload = mix.encode_batch(node).payload
            keys = [part.split(b"\r\n")[0] for part in payload.split(b"key:")[1:]]
            assert {owner[key_slot(b"key:" + key)] for key in keys} == {node}
    slot = key_slot(b"key:0")
    moved_from = owner[slot]
    assert mix.move(slot, 1 - moved_from)
    assert 0 in mix.keys[1 - moved_from] and 0 not in mix.keys[moved_from]
    assert not mix.move(slot, 1 - moved_from)


def test_a_cluster_batch_expects_ok_for_each_set_and_the_value_for_each_get() -> None:
    slots = SlotMap((Node("h", 1),), (0,) * SLOTS)
    mix = ClusterMix(keyspace=50, set_ratio=0.5, value_size=8, pipeline=16, seed=2, slots=slots)
    batch = mix.encode_batch(0)
    assert batch.replies is not None
    reader = hiredis.Reader()
    reader.feed(batch.replies)
    replies = [reader.gets() for _ in batch.kinds]
    assert replies == [b"OK" if kind == RequestMix.SET else make_value(8) for kind in batch.kinds]
    assert reader.gets() is False
