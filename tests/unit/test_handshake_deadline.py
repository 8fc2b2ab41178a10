"""When the builtin driver's loop must next look for timed-out connections
(:func:`agent.drivers.resp_connection.next_deadline`): a reply timeout of a ready connection, or
the connect deadline of one still connecting, shaking hands or authenticating (issue 13,
item 4). Pure: connections without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.drivers.resp import Batch
from agent.drivers.resp_connection import (
    AUTHENTICATING,
    CONNECTING,
    DOWN,
    NEVER,
    READY,
    TLS_HANDSHAKE,
    Connection,
    next_deadline,
)

NOW = 10**12
SECOND = 10**9
BATCH = Batch(payload=b"*1\r\n$4\r\nPING\r\n", kinds=(0,), counts=(1,))
HANDSHAKING = (CONNECTING, TLS_HANDSHAKE, AUTHENTICATING)


def connection(state: int, *, handshake_deadline: int = 0, last_reply_ns: int = 0,
               batch: Batch | None = None) -> Connection:
    conn = Connection()
    conn.state = state
    conn.handshake_deadline = handshake_deadline
    conn.last_reply_ns = last_reply_ns
    conn.batch = batch
    return conn


@pytest.mark.parametrize("state", HANDSHAKING)
def test_a_connection_still_handshaking_wakes_the_loop_at_its_deadline_even_without_a_reply_timeout(
    state: int,
) -> None:
    conns = [connection(state, handshake_deadline=NOW + SECOND)]
    assert next_deadline(conns, NOW, 0) == NOW + SECOND
    assert next_deadline(conns, NOW, 5 * SECOND) == NOW + SECOND
    assert next_deadline(conns, NOW, SECOND // 2) == NOW + SECOND // 2  # one timeout at most


def test_nothing_to_time_out_is_never_and_stale_deadlines_are_ignored() -> None:
    conns = [connection(DOWN, handshake_deadline=NOW - SECOND),
             connection(READY, handshake_deadline=NOW - SECOND)]  # ready: its deadline passed
    assert next_deadline(conns, NOW, 0) == NEVER
    assert next_deadline(conns, NOW, 2 * SECOND) == NOW + 2 * SECOND


def test_a_ready_connection_awaiting_replies_times_out_one_reply_timeout_after_its_last_reply(
) -> None:
    conns = [connection(READY, last_reply_ns=NOW - SECOND, batch=BATCH),
             connection(AUTHENTICATING, handshake_deadline=NOW + 3 * SECOND)]
    assert next_deadline(conns, NOW, 2 * SECOND) == NOW + SECOND
    assert next_deadline(conns, NOW, 0) == NOW + 3 * SECOND  # no reply timeout: the handshake's


@given(st.lists(st.tuples(st.sampled_from((READY, DOWN, *HANDSHAKING)),
                          st.integers(-10 * SECOND, 10 * SECOND), st.booleans()), max_size=8),
       st.integers(0, 10 * SECOND))
def test_the_deadline_is_never_later_than_any_connection_s_own(
    specs: list[tuple[int, int, bool]], reply_timeout_ns: int
) -> None:
    conns = [connection(state, handshake_deadline=NOW + offset, last_reply_ns=NOW + offset,
                        batch=BATCH if busy else None) for state, offset, busy in specs]
    deadline = next_deadline(conns, NOW, reply_timeout_ns)
    for conn in conns:
        if conn.state in HANDSHAKING:
            assert deadline <= conn.handshake_deadline
        if conn.state == READY and conn.batch is not None and reply_timeout_ns:
            assert deadline <= conn.last_reply_ns + reply_timeout_ns
    if reply_timeout_ns:
        assert deadline <= NOW + reply_timeout_ns
    elif not any(conn.state in HANDSHAKING for conn in conns):
        assert deadline == NEVER
