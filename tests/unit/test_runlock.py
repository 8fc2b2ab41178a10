"""The run lock's pure parts (agent.runlock): /proc/locks, holder descriptions, refusals."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from agent.runlock import (
    Holder,
    ProcessFacts,
    lock_name,
    lock_pids,
    parse_holder,
    refusal,
    who_holds,
)

PROC_LOCKS = """\
1: POSIX  ADVISORY  WRITE 812 00:1a:931 0 EOF
2: FLOCK  ADVISORY  WRITE 4242 08:01:123456 0 EOF
2: -> FLOCK  ADVISORY  WRITE 5151 08:01:123456 0 EOF
3: FLOCK  ADVISORY  WRITE 77 08:02:123456 0 EOF
4: OFDLCK ADVISORY  READ  -1 08:01:999 0 EOF
junk
"""
HOLDER = Holder(operator="ana@lab", coordinator_pid=1234, since="2026-11-28 21:40:03 UTC",
                agent_pid=4242)  # fmt: skip


def test_the_holder_of_a_file_is_found_by_device_and_inode() -> None:
    assert lock_pids(PROC_LOCKS, 8, 1, 123456) == [4242]  # the waiter (->) is not a holder
    assert lock_pids(PROC_LOCKS, 8, 2, 123456) == [77]
    assert lock_pids(PROC_LOCKS, 0x00, 0x1A, 931) == [812]
    assert lock_pids(PROC_LOCKS, 8, 1, 999) == [-1]
    assert lock_pids(PROC_LOCKS, 8, 1, 1) == []
    assert lock_pids("", 8, 1, 123456) == []


def test_a_holder_described_by_its_agent_is_named_by_its_run() -> None:
    facts = [ProcessFacts(4242, user="coord", command="python3", started="...")]
    held_by = who_holds(HOLDER, facts)
    assert held_by == (
        "held by the coord run of ana@lab (pid 1234) since 2026-11-28 21:40:03 UTC"
    )
    assert refusal(held_by) == (
        "this host is held by the coord run of ana@lab (pid 1234) since 2026-11-28 21:40:03 "
        "UTC; pass --force to run anyway"
    )


def test_a_description_the_kernel_does_not_confirm_is_not_believed() -> None:
    squatter = ProcessFacts(999, user="mallory", command="sleep",
                            started="2026-11-28 20:00:00 UTC")  # fmt: skip
    assert who_holds(HOLDER, [squatter]) == (
        "held by process 999 (sleep) of user mallory since 2026-11-28 20:00:00 UTC, "
        "not a coord agent"
    )
    assert who_holds(None, [ProcessFacts(5)]) == "held by process 5, not a coord agent"
    assert who_holds(HOLDER, []) == "held by a process this agent cannot see"


@given(st.text(max_size=200))
def test_any_file_content_parses_to_a_holder_or_none(text: str) -> None:
    holder = parse_holder(text)
    assert holder is None or "\n" not in holder.describe()


def test_holders_round_trip_and_junk_is_refused() -> None:
    assert parse_holder(json.dumps(HOLDER.to_json())) == HOLDER
    assert parse_holder("") is None
    assert parse_holder("[1, 2]") is None
    assert parse_holder(json.dumps({**HOLDER.to_json(), "coordinator_pid": "1234"})) is None
    multi = parse_holder(json.dumps({**HOLDER.to_json(), "operator": "a\nb"}))
    assert multi is not None
    assert multi.operator == "a b"


def test_the_lock_file_is_per_network_namespace() -> None:
    assert lock_name(4026531840) == "coord-run-4026531840.lock"
    assert lock_name(None) == "coord-run.lock"
