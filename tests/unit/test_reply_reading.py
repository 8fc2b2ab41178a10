"""How the RESP load loops read replies (agent.drivers.worker, agent.drivers.resp_connection):
a read's replies are taken in C, and only a read that brought an error reply, or a batch whose
replies have an expected type, is looked at reply by reply."""

from __future__ import annotations

import socket

import hiredis

from agent.drivers.resp import Batch
from agent.drivers.resp_connection import ERROR_REPLIES, NO_REPLY, Connection
from agent.drivers.templates import EXPECT
from agent.drivers.worker import bad_replies


def test_a_connection_counts_the_error_replies_its_reader_makes() -> None:
    ours, theirs = socket.socketpair()
    conn = Connection()
    try:
        conn.attach(ours)
        before = ERROR_REPLIES[0]
        data = bytearray(b"+OK\r\n:0\r\n#f\r\n$1\r\nx\r\n_\r\n")
        conn.feed(data, 0, len(data))
        # 0, false and nil are replies like any other: only NO_REPLY ends a read
        assert [*iter(conn.gets, NO_REPLY)] == [b"OK", 0, False, b"x", None]
        assert ERROR_REPLIES[0] == before  # no error: the loop looks at nothing
        data = bytearray(b"-WRONGTYPE no\r\n:1\r\n-ERR bad\r\n")
        conn.feed(data, 0, len(data))
        replies = [*iter(conn.gets, NO_REPLY)]
        assert ERROR_REPLIES[0] == before + 2
        assert [type(reply) for reply in replies] == [hiredis.ReplyError, int, hiredis.ReplyError]
        assert str(replies[0]) == "WRONGTYPE no"
    finally:
        conn.detach()
        theirs.close()


def test_bad_replies_are_the_errors_by_position_in_the_batch() -> None:
    error = hiredis.ReplyError("ERR x")
    assert bad_replies([b"a", error, None], 5, None) == [(6, error)]
    assert bad_replies([b"a", b"b"], 0, None) is None


def test_a_reply_of_another_type_than_expected_is_bad() -> None:
    batch = Batch(b"", (0, 0, 0), (3,), (None, EXPECT["integer"], EXPECT["integer"]))
    bad = bad_replies([b"x", 7, b"not a number"], 0, batch)
    assert bad is not None
    ((position, reply),) = bad
    assert position == 2
    assert "reply bytes" in str(reply)
