"""The preload's own command (benchmark.builtin.preload_command; agent/drivers/templates.py):
one command per key, its {key} the key filled, in order, on one server or split by the
primaries of a cluster; refused in one line where it cannot fill a keyspace."""

from __future__ import annotations

import dataclasses
import random

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers.builtin_params import load_shapes, parse_params
from agent.drivers.cluster_mix import ClusterMix
from agent.drivers.cluster_slots import SLOTS, Node, SlotMap, key_slot
from agent.drivers.cluster_template_mix import ClusterTemplateMix
from agent.drivers.errors import DriverError
from agent.drivers.keyspace import Keyspace
from agent.drivers.memory import process_bytes
from agent.drivers.resp import RequestMix
from agent.drivers.templates import (
    Expander,
    PreloadCommand,
    TemplateError,
    parse_preload_command,
    parse_templates,
)
from coordinator.core.errors import InventoryError
from coordinator.inventory.loader import parse_inventory
from coordinator.run.loadspec import builtin_params

HSET = ["HSET", "{key}", "name", "{value:4}", "score", "{int:0:9}", "self", "{key}"]


def commands(payload: bytes) -> list[list[bytes]]:
    reader = hiredis.Reader()
    reader.feed(payload)
    found = []
    while (command := reader.gets()) is not False:
        found.append(command)
    return found


def preload(words: list[str], prefix: str = "player:", seed: int = 1) -> PreloadCommand:
    return PreloadCommand(parse_preload_command(words, "preload_command"),
                          Keyspace(10_000, prefix), 8,
                          random.Random(seed), {"f": b"file bytes"}.__getitem__)  # noqa: S311


def test_each_key_gets_one_command_with_its_name_wherever_the_command_says_key() -> None:
    sent = commands(preload(HSET).batch([5, 6, 7]))
    assert [c[1] for c in sent] == [b"player:5", b"player:6", b"player:7"]
    assert all(c[7] == c[1] for c in sent)  # the same key throughout one command
    assert all(c[0] == b"HSET" and c[2] == b"name" and len(c[3]) == 4 for c in sent)
    assert all(0 <= int(c[5]) <= 9 for c in sent)


def test_the_other_placeholders_expand_as_in_templates() -> None:
    sent = commands(preload(["RPUSH", "{key}", "{seq}", "{file:f}", "{float:1:2}"]).batch(
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
    assert [len(commands(batch)) for batch in batches] == [10, 10, 5]
    names = [c[1] for batch in batches for c in commands(batch)]
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
                sent = commands(payload)
                assert number == len(sent) <= size
                assert all(slots.owner[key_slot(c[1])] == node for c in sent)
                seen += [c[1] for c in sent]
        assert sorted(seen) == sorted(prefix.encode() + b"%d" % n for n in range(first, end))


INVENTORY = """\
hosts:
  - {name: c1, address: 198.18.221.2, roles: [client]}
  - {name: s1, address: 198.18.221.3, roles: [server]}
servers:
  - {name: redis, host: s1}
benchmark:
  builtin:
"""


@pytest.mark.parametrize(("builtin", "line"), [
    ("    preload_command: [HSET, '{key}', f, 1]\n",
     "bad.yaml:7: benchmark.builtin: preload_command is the preload's command: set preload: "
     "true"),
    ("    preload: true\n    preload_command: [HSET, counter, f, 1]\n",
     "bad.yaml:7: benchmark.builtin: preload_command: needs {key}"),
    ("    preload: true\n    preload_command: [HSET, '{key}', f, '{value:q}']\n",
     "bad.yaml:7: benchmark.builtin: preload_command[3]: {value:q}: a size"),
])  # fmt: skip
def test_the_inventory_refuses_an_unusable_preload_command_in_one_line(
        builtin: str, line: str) -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(INVENTORY + builtin, "bad.yaml")
    assert len(caught.value.lines()) == 1
    assert caught.value.lines()[0].startswith(line), caught.value.lines()


def test_a_preload_command_reaches_the_agent_and_its_memory_estimate() -> None:
    loaded = parse_inventory(INVENTORY + (
        "    preload: true\n"
        "    keyspace: 5000\n"
        "    preload_command: [HSET, '{key}', blob, '{value:100000}']\n"), "ok.yaml")
    params = builtin_params(loaded.inventory, True) | {"processes": 1}
    assert params["preload_command"] == ["HSET", "{key}", "blob", "{value:100000}"]
    parsed = parse_params(params)
    assert parsed.preload_command == ("HSET", "{key}", "blob", "{value:100000}")
    (shape,) = load_shapes(parsed, cores=1)
    assert shape.preload_request > 100_000
    with_set = process_bytes(dataclasses.replace(shape, preload_request=0),
                             preload_batch=1000, recv_size=65536)
    assert process_bytes(shape, preload_batch=1000, recv_size=65536) > with_set + 10**8
    with pytest.raises(DriverError, match=r"spec.params.preload_command: needs \{key\}"):
        parse_params(params | {"preload_command": ["HSET", "k", "f", "1"]})
