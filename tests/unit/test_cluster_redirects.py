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
    commands_at,
    decisive,
    follow,
    is_redirection,
    request_span,
)
from agent.drivers.cluster_slots import Node
from agent.drivers.resp import encode_command
from agent.drivers.templates import HIDDEN

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


@given(st.lists(words, min_size=1, max_size=6), st.data())
def test_commands_at_finds_a_run_of_commands(commands: list[list[bytes]],
                                            data: st.DataObject) -> None:
    payload = b"".join(encode_command(*command) for command in commands)
    first = data.draw(st.integers(0, len(commands) - 1))
    count = data.draw(st.integers(1, len(commands) - first))
    assert commands_at(payload, first, count) == b"".join(
        encode_command(*command) for command in commands[first : first + count])


#: A batch: GET (command 0), a MULTI block of two commands (5 replies: OK, QUEUED x 2,
#: EXEC's under command 1), SET (command 2), a block of one (OK, QUEUED, EXEC's under 1).
KINDS = (0, HIDDEN, HIDDEN, HIDDEN, 1, 2, HIDDEN, HIDDEN, 1)


@pytest.mark.parametrize(("position", "span"), [
    (0, (0, 1)), (1, (1, 4)), (2, (1, 4)), (3, (1, 4)), (4, (1, 4)), (5, (5, 1)),
    (6, (6, 3)), (7, (6, 3)), (8, (6, 3)),
])
def test_a_reply_in_a_multi_block_belongs_to_the_whole_block(
    position: int, span: tuple[int, int]
) -> None:
    assert request_span(KINDS, position) == span


@given(st.lists(st.one_of(st.just(0), st.integers(1, 4)), min_size=1, max_size=8), st.data())
def test_request_spans_tile_a_batch(requests: list[int], data: st.DataObject) -> None:
    """A batch of commands (0) and blocks (n commands): each reply's span is its request's."""
    kinds: list[int] = []
    spans: list[tuple[int, int]] = []
    for size in requests:
        first = len(kinds)
        kinds += [0] if size == 0 else [HIDDEN] * (size + 1) + [1]
        spans += [(first, len(kinds) - first)] * (len(kinds) - first)
    position = data.draw(st.integers(0, len(kinds) - 1))
    assert request_span(kinds, position) == spans[position]


class FakeCluster:
    """Answers each send with the next of ``replies`` (a list: a request's replies; anything
    else: its last reply, ``OK`` before it); remembers what went where."""

    def __init__(self, *replies: object) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[Node, bytes, int]] = []

    def send(self, node: Node, payload: bytes, replies: int) -> list[object]:
        self.sent.append((node, payload, replies))
        answer = self.replies.pop(0)
        return answer if isinstance(answer, list) else [b"OK"] * (replies - 1) + [answer]


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


BLOCK = b"".join(encode_command(*words) for words in (
    ("MULTI",), ("INCR", "{t}:1"), ("GET", "{t}:1"), ("EXEC",)))
EXECABORT = hiredis.ReplyError("EXECABORT Transaction discarded because of previous errors.")


def test_a_redirected_block_is_sent_again_whole_and_ends_with_exec_s_reply() -> None:
    cluster = FakeCluster([b"OK", b"QUEUED", b"QUEUED", [1, b"1"]])
    outcome = follow(hiredis.ReplyError("MOVED 9 10.0.0.2:7001"), BLOCK, SEED, cluster.send,
                     replies=4)
    assert cluster.sent == [(B, BLOCK, 4)]
    assert (outcome.reply, outcome.redirects) == ([1, b"1"], {"MOVED": 1})


def test_a_block_s_command_redirected_again_is_followed_not_its_execabort() -> None:
    ask = hiredis.ReplyError("ASK 9 10.0.0.1:7000")
    cluster = FakeCluster([b"OK", ask, ask, EXECABORT],
                          [b"OK", b"OK", b"QUEUED", b"QUEUED", [2, b"2"]])
    outcome = follow(hiredis.ReplyError("MOVED 9 10.0.0.2:7001"), BLOCK, SEED, cluster.send,
                     replies=4)
    assert cluster.sent == [(B, BLOCK, 4), (A, ASKING_COMMAND + BLOCK, 5)]
    assert (outcome.reply, outcome.redirects) == ([2, b"2"], {"MOVED": 1, "ASK": 1})


def test_the_decisive_reply_is_the_first_redirection_else_the_last() -> None:
    moved = hiredis.ReplyError("MOVED 1 10.0.0.2:7001")
    wrongtype = hiredis.ReplyError("WRONGTYPE nope")
    assert decisive([b"OK", wrongtype, moved, EXECABORT]) is moved
    assert decisive([b"OK", wrongtype, EXECABORT]) is EXECABORT
    assert decisive([b"v"]) == b"v"


def test_the_default_limit_is_a_few() -> None:
    assert 3 <= REDIRECT_LIMIT <= 16


def test_is_redirection() -> None:
    assert is_redirection("MOVED 1 a:1") and is_redirection("ASK 1 a:1")
    assert not is_redirection("MOVEDX 1") and not is_redirection("ERR ASK")
