"""The preload's own command (benchmark.builtin.preload_command; agent/drivers/templates.py):
one command per key, its {key} the key filled, in order, on one server or split by the
primaries of a cluster; refused where it cannot fill a keyspace (the inventory's refusals:
tests/unit/test_templates.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers.cluster_mix import ClusterMix
from agent.drivers.cluster_slots import SLOTS, Node, SlotMap, key_slot
from agent.drivers.cluster_template_mix import ClusterTemplateMix
from agent.drivers.keyspace import Keyspace
from agent.drivers.resp import RequestMix
from agent.drivers.templates import (
    Expander,
    PreloadCommand,
    TemplateError,
    parse_preload_command,
    parse_templates,
)
from tests.unit.test_templates import parse_all

HSET = ["HSET", "{key}", "name", "{value:4}", "score", "{int:0:9}", "self", "{key}"]


def preload(words: list[str], prefix: str = "player:", seed: int = 1) -> PreloadCommand:
    return PreloadCommand(parse_preload_command(words, "preload_command"),
                          Keyspace(10_000, prefix), 8,
                          random.Random(seed), {"f": b"file bytes"}.__getitem__)  # noqa: S311


def test_each_key_gets_one_command_with_its_name_wherever_the_command_says_key() -> None:
    sent = parse_all(preload(HSET).batch([5, 6, 7]))
    assert [c[1] for c in sent] == [b"player:5", b"player:6", b"player:7"]
    assert all(c[7] == c[1] for c in sent)  # the same key throughout one command
    assert all(c[0] == b"HSET" and c[2] == b"name" and len(c[3]) == 4 for c in sent)
    assert all(0 <= int(c[5]) <= 9 for c in sent)


def test_the_other_placeholders_expand_as_in_templates() -> None:
    sent = parse_all(preload(["RPUSH", "{key}", "{seq}", "{file:f}", "{float:1:2}"]).batch(
        range(3)))
    assert [c[2] for c in sent] == [b"0", b"1", b"2"]
    assert all(c[3] == b"file bytes" and 1.0 <= float(c[4]) <= 2.0 for c in sent)


@pytest.mark.parametrize(("words", "problem"), [
    (["HSET", "counter", "f", "1"], "needs {key}"),
    (["GET", "{key:last}"], "needs {key}"),
    (["HSET", "{key}", "f", "{int:9:1}"], "LO above HI"),
    (["{key}"], "the command's name"),
    ([], "a list of"),
])
def test_a_command_that_cannot_fill_the_keyspace_is_refused_naming_the_word(
        words: list[str], problem: str) -> None:
    with pytest.raises(TemplateError, match=problem):
        parse_preload_command(words, "preload_command")


def test_one_server_gets_the_keys_in_order_a_batch_at_a_time() -> None:
    mix = RequestMix(keyspace=Keyspace(100, "player:"), value_size=8, pipeline=1, seed=1)
    batches = list(mix.preload_batches(10, 35, 10, preload(HSET)))
    assert [len(parse_all(batch)) for batch in batches] == [10, 10, 5]
    names = [c[1] for batch in batches for c in parse_all(batch)]
    assert names == [b"player:%d" % n for n in range(10, 35)]


def three_primaries() -> SlotMap:
    third = SLOTS // 3
    return SlotMap((Node("n", 1), Node("n", 2), Node("n", 3)),
                   tuple(min(slot // third, 2) for slot in range(SLOTS)))


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 400), st.integers(1, 200), st.integers(1, 64))
def test_a_cluster_gets_each_key_once_on_the_primary_that_serves_it(
        first: int, count: int, size: int) -> None:
    slots = three_primaries()
    end = first + count
    set_get = ClusterMix(keyspace=1000, set_ratio=0.5, value_size=8, pipeline=1, seed=1,
                         slots=slots)
    expander = Expander(parse_templates([{"command": ["HGET", "{key}", "name"]}]),
                        Keyspace(1000, "player:"), 8, random.Random(1))  # noqa: S311
    templated = ClusterTemplateMix(expander=expander, pipeline=1, slots=slots,
                                   key_prefix="player:", checks=False, value_arg=b"$1\r\nx\r\n")
    for mix, prefix in ((set_get, "key:"), (templated, "player:")):
        command = preload(HSET, prefix)
        seen = []
        for node in range(3):
            for number, payload in mix.preload_batches(node, first, end, size, command):
                sent = parse_all(payload)
                assert number == len(sent) <= size
                assert all(slots.owner[key_slot(c[1])] == node for c in sent)
                seen += [c[1] for c in sent]
        assert sorted(seen) == sorted(prefix.encode() + b"%d" % n for n in range(first, end))
