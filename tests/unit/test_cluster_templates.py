"""Command templates over a Redis Cluster (agent.drivers.cluster_templates,
agent.drivers.cluster_template_mix): key arguments, one slot per multi-key template, and every
batch of a primary's connection holding only requests whose keys it serves."""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers.cluster_redirects import command_at
from agent.drivers.cluster_slots import SLOTS, Node, SlotMap, key_slot
from agent.drivers.cluster_template_mix import ClusterTemplateMix
from agent.drivers.cluster_templates import (
    KeyWord,
    check_templates,
    command_words,
    key_words,
    request_slot,
    static_tag,
)
from agent.drivers.keyspace import Keyspace
from agent.drivers.resp import encode_command
from agent.drivers.templates import CommandTemplate, Expander, TemplateError, parse_templates


def split_commands(payload: bytes) -> list[bytes]:
    """Every command of a batch, in order."""
    commands = []
    while sum(map(len, commands)) < len(payload):
        commands.append(command_at(payload, len(commands)))
    return commands


def templates(*items: dict[str, object]) -> tuple[CommandTemplate, ...]:
    return parse_templates(list(items))


def test_key_arguments_are_the_key_placeholders_and_evals_declared_keys() -> None:
    (mget, evalk, block) = templates(
        {"command": ["MGET", "{t}:{key}", "{t}:{key}"]},
        {"command": ["EVAL", "return 1", 2, "{a}x", "{a}y", "{key}"]},
        {"multi": [["SET", "{u}{key}", "{value}"], ["GET", "{u}{key}"]]})
    assert key_words(mget) == (KeyWord(0, 1), KeyWord(0, 2))
    assert key_words(evalk) == (KeyWord(0, 3), KeyWord(0, 4), KeyWord(0, 5))
    assert key_words(block) == (KeyWord(0, 1), KeyWord(1, 1))


@pytest.mark.parametrize(("word", "prefix", "tag"), [
    ("{user}:{key}", "key:", "user"),
    ("{key}", "{t}:", "t"),
    ("{key}", "key:", None),
    ("x{key}{user}", "k", None),  # the key's bytes come before the tag
    ("{}{key}", "k", None),  # an empty tag is no tag
    ("{a{key}}", "k", None),
    ("{seq}{t}", "k", None),
])
def test_static_tags(word: str, prefix: str, tag: str | None) -> None:
    assert static_tag(word, prefix) == tag


def test_a_multi_key_template_without_one_tag_is_refused_naming_it() -> None:
    good = templates({"command": ["MGET", "{t}:{key}", "{t}:{key}"]},
                     {"command": ["GET", "{key}"]})
    assert len(check_templates(good, "key:")) == 2
    bad = templates({"command": ["GET", "{key}"]},
                    {"command": ["MGET", "{key}", "{key}"], "name": "pair"})
    with pytest.raises(TemplateError, match=r"^templates\[1\]: pair against a Redis "
                       r"Cluster: its keys \(\{key\}, \{key\}\) must hash to one slot"):
        check_templates(bad, "key:")
    assert check_templates(bad, "{all}:")  # the prefix's tag holds every key together
    with pytest.raises(TemplateError, match=r"templates\[0\]"):
        check_templates(templates({"command": ["MSET", "{a}{key}", "1", "{b}{key}", "2"]}),
                        "k")


@given(st.lists(st.binary(max_size=30), min_size=1, max_size=5))
def test_command_words_reads_what_encode_command_wrote(words: list[bytes]) -> None:
    assert command_words(encode_command(*words)) == words


def test_request_slot_is_its_first_keys() -> None:
    payload = b"*1\r\n$5\r\nMULTI\r\n" + encode_command("SET", "{u}k", "v") + encode_command(
        "GET", "{u}k") + b"*1\r\n$4\r\nEXEC\r\n"
    assert request_slot(payload, KeyWord(0, 1), block=True) == key_slot(b"u")
    assert request_slot(encode_command("PING"), None, block=False) is None


def three_primaries() -> SlotMap:
    nodes = (Node("n", 1), Node("n", 2), Node("n", 3))
    third = SLOTS // 3
    return SlotMap(nodes, tuple(min(slot // third, 2) for slot in range(SLOTS)))


MIX = templates({"command": ["SET", "{key}", "{value}"], "weight": 2},
                {"command": ["GET", "{key}"]},
                {"command": ["HSET", "{h}:{key}", "f", "{int:1:9}"]},
                {"command": ["PING"], "weight": 0.5},
                {"multi": [["INCR", "{c}{key}"], ["GET", "{c}{key}"]]})


def cluster_mix(seed: int, pipeline: int, slots: SlotMap) -> ClusterTemplateMix:
    expander = Expander(MIX, Keyspace(500), 8, Random(seed))  # noqa: S311 (a load)
    return ClusterTemplateMix(expander=expander, pipeline=pipeline, slots=slots,
                              key_prefix="key:", checks=False, value_arg=b"$1\r\nx\r\n")


@settings(max_examples=30)
@given(st.integers(0, 2**32), st.integers(1, 8), st.lists(st.integers(0, 2), min_size=1,
                                                          max_size=30))
def test_every_request_of_a_batch_is_served_by_its_connections_primary(
        seed: int, pipeline: int, asking: list[int]) -> None:
    slots = three_primaries()
    mix = cluster_mix(seed, pipeline, slots)
    for node in asking:
        batch = mix.encode_batch(node)
        assert len([kind for kind in batch.kinds if kind >= 0]) == pipeline
        for command in split_commands(batch.payload):
            words = command_words(command)
            if words[0] in (b"SET", b"GET", b"HSET", b"INCR"):
                assert slots.owner[key_slot(words[1])] == node


def test_a_moved_slot_routes_its_keys_to_the_new_primary() -> None:
    slots = three_primaries()
    mix = cluster_mix(1, 4, slots)
    hot = key_slot(b"h")  # every HSET's slot
    new_owner = (slots.owner[hot] + 1) % 3
    assert mix.move(hot, new_owner)
    hsets = [words for _ in range(200) for words in map(
        command_words, split_commands(mix.encode_batch(new_owner).payload))
        if words[0] == b"HSET"]
    assert hsets  # the HSETs now come to the new owner's connections


def test_a_primary_no_request_reaches_still_gets_batches() -> None:
    """Every key on one tag: the other primaries' connections take its requests (redirected
    then), rather than drawing for ever."""
    only = templates({"command": ["GET", "{one}:{key}"]})
    expander = Expander(only, Keyspace(50), 8, Random(3))  # noqa: S311 (a load)
    slots = three_primaries()
    mix = ClusterTemplateMix(expander=expander, pipeline=2, slots=slots, key_prefix="key:",
                             checks=False, value_arg=b"$1\r\nx\r\n")
    elsewhere = (slots.owner[key_slot(b"one")] + 1) % 3
    assert len(mix.encode_batch(elsewhere).kinds) == 2
