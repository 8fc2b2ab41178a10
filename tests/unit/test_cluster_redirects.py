"""Following MOVED and ASK (agent.drivers.cluster_redirects) against a fake cluster."""

from __future__ import annotations

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.drivers.cluster_redirects import (
    ASKING_COMMAND,
    REDIRECT_LIMIT,
    command_at,
    follow,
    is_redirection,
)
from agent.drivers.cluster_slots import Node
from agent.drivers.resp import encode_command

SEED = "10.0.0.1"
A, B = Node("10.0.0.1", 7000), Node("10.0.0.2", 7001)

words = st.lists(st.binary(max_size=20), min_size=1, max_size=4)


@given(st.lists(words, min_size=1, max_size=6), st.data())
def test_command_at_finds_each_command_of_a_batch(commands: list[list[bytes]],
                                                  data: st.DataObject) -> None:
    payload = b"".join(encode_command(*command) for command in commands)
    position = data.draw(st.integers(0, len(commands) - 1))
    assert command_at(payload, position) == encode_command(*commands[position])


def test_command_at_refuses_a_batch_shorter_than_the_position() -> None:
    with pytest.raises(ValueError, match="not a RESP array"):
        command_at(encode_command("GET", "k"), 1)
    with pytest.raises(ValueError, match="truncated"):
        command_at(encode_command("GET", "key")[:-3], 0)


class FakeCluster:
    """Answers each send with the next of ``replies``; remembers what went where."""

    def __init__(self, *replies: object) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[Node, bytes, int]] = []

    def send(self, node: Node, payload: bytes, replies: int) -> object:
        self.sent.append((node, payload, replies))
        return self.replies.pop(0)


GET = encode_command("GET", "key:0")


def test_a_reply_that_is_not_a_redirection_is_final() -> None:
    cluster = FakeCluster()
    outcome = follow(b"value", GET, SEED, cluster.send)
    assert (outcome.reply, outcome.redirects, outcome.gave_up, cluster.sent) == (
        b"value", {}, False, [])
    wrongtype = hiredis.ReplyError("WRONGTYPE nope")
    assert follow(wrongtype, GET, SEED, cluster.send).reply is wrongtype


def test_moved_resends_the_request_to_the_node_named_and_reports_the_move() -> None:
    cluster = FakeCluster(b"value")
    outcome = follow(hiredis.ReplyError("MOVED 3000 10.0.0.2:7001"), GET, SEED, cluster.send)
    assert cluster.sent == [(B, GET, 1)]
    assert outcome.reply == b"value"
    assert outcome.redirects == {"MOVED": 1}
    assert [(m.slot, m.node) for m in outcome.moved] == [(3000, B)]


def test_ask_resends_after_asking_and_moves_nothing() -> None:
    cluster = FakeCluster(b"OK")
    outcome = follow(hiredis.ReplyError("ASK 3000 :7001"), GET, SEED, cluster.send)
    assert cluster.sent == [(Node(SEED, 7001), ASKING_COMMAND + GET, 2)]
    assert (outcome.reply, outcome.redirects, outcome.moved) == (b"OK", {"ASK": 1}, [])


def test_a_chain_of_redirections_is_followed_to_its_end() -> None:
    cluster = FakeCluster(hiredis.ReplyError("ASK 1 10.0.0.1:7000"), b"v")
    outcome = follow(hiredis.ReplyError("MOVED 1 10.0.0.2:7001"), GET, SEED, cluster.send)
    assert [node for node, _, _ in cluster.sent] == [B, A]
    assert outcome.redirects == {"MOVED": 1, "ASK": 1}
    assert outcome.reply == b"v"


@given(st.integers(0, 12), st.integers(1, 8))
def test_redirections_stop_at_the_limit(extra: int, limit: int) -> None:
    """A request bounced ``n`` times is re-sent min(n, limit) times, and given up past it."""
    bounces = [hiredis.ReplyError(f"MOVED 5 10.0.0.{i % 2 + 1}:700{i % 2}") for i in range(extra)]
    cluster = FakeCluster(*bounces, b"done")
    outcome = follow(hiredis.ReplyError("MOVED 5 10.0.0.2:7001"), GET, SEED, cluster.send,
                     limit=limit)
    assert sum(outcome.redirects.values()) == len(cluster.sent) == min(extra + 1, limit)
    assert outcome.gave_up == (extra + 1 > limit)
    assert (outcome.reply == b"done") != outcome.gave_up


def test_the_default_limit_is_a_few() -> None:
    assert 3 <= REDIRECT_LIMIT <= 16


def test_is_redirection() -> None:
    assert is_redirection("MOVED 1 a:1") and is_redirection("ASK 1 a:1")
    assert not is_redirection("MOVEDX 1") and not is_redirection("ERR ASK")
