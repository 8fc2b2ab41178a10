"""Command templates (agent.drivers.templates): parsing, expansion into RESP, the request mix
built on them (agent.drivers.resp.RequestMix), and the inventory's refusals."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import Any

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers.builtin_params import load_shapes, parse_params
from agent.drivers.errors import DriverError
from agent.drivers.keyspace import Distribution, Keyspace
from agent.drivers.memory import process_bytes
from agent.drivers.resp import (
    POOL_MAX_REQUESTS,
    POOL_REQUESTS_PER_KEY,
    REFRESH_EVERY,
    RequestMix,
)
from agent.drivers.templates import (
    EXPECT,
    HIDDEN,
    Expander,
    TemplateError,
    default_templates,
    make_value,
    parse_templates,
    request_size_estimate,
)
from coordinator.core.errors import InventoryError
from coordinator.inventory.loader import parse_inventory


def parse_all(payload: bytes) -> list[list[bytes]]:
    reader = hiredis.Reader()
    reader.feed(payload)
    commands = []
    while (command := reader.gets()) is not False:
        commands.append(command)
    return commands


def expander(templates: list[dict[str, Any]], *, keys: int = 100, seed: int = 1,
             files: dict[str, bytes] | None = None) -> Expander:  # fmt: skip
    rng = random.Random(seed)  # noqa: S311 (a load, not a secret)
    return Expander(parse_templates(templates), Keyspace(keys, "k:"), 8, rng,
                    (files or {}).__getitem__)  # fmt: skip


def test_every_placeholder_expands_to_its_bytes() -> None:
    exp = expander([{"command": [
        "X", "{key}", "{value}", "{value:5}", "{value:6:random}", "{file:/blob}",
        "{int:3:5}", "{float:0.5:1.5}", "{seq}", "{tensor:float32:2x3}", "a{key}b", "{lua}",
    ]}], files={"/blob": b"\x00\r\n\xff"})  # fmt: skip
    seen_ints = set()
    for expected_seq in range(200):
        payload, kinds, checks = exp.expand()
        (words,) = parse_all(payload)
        assert kinds == (0,) and checks == (None,)
        assert words[0] == b"X"
        assert words[1].startswith(b"k:") and 0 <= int(words[1][2:]) < 100
        assert words[2] == make_value(8) and words[3] == make_value(5)
        assert len(words[4]) == 6
        assert words[5] == b"\x00\r\n\xff"
        seen_ints.add(int(words[6]))
        assert 0.5 <= float(words[7]) < 1.5
        assert words[8] == b"%d" % expected_seq
        assert len(words[9]) == 2 * 3 * 4
        assert words[10].startswith(b"ak:") and words[10].endswith(b"b")
        assert words[11] == b"{lua}"  # not a placeholder: literal
    assert seen_ints == {3, 4, 5}
    assert exp.fresh_only  # a counter must be encoded in order


def test_a_multi_block_is_multi_its_commands_and_exec_with_one_recorded_reply() -> None:
    exp = expander([{"multi": [["INCR", "{key}"], ["EXPIRE", "{key}", 60]], "expect": "array"}])
    payload, kinds, checks = exp.expand()
    names = [words[0] for words in parse_all(payload)]
    assert names == [b"MULTI", b"INCR", b"EXPIRE", b"EXEC"]
    assert kinds == (HIDDEN, HIDDEN, HIDDEN, 0)
    assert checks[:3] == (None, None, None) and checks[3] is EXPECT["array"]
    assert exp.commands == ("MULTI",)


def test_weights_share_the_requests_and_names_share_a_command() -> None:
    exp = expander([
        {"command": ["SET", "{key}", "{value}"], "weight": 1},
        {"command": ["GET", "{key}"], "weight": 10},
        {"command": ["get", "{key}"], "weight": 9},  # same name: GET
    ])  # fmt: skip
    assert exp.commands == ("SET", "GET")
    counts = Counter(exp.expand()[1][0] for _ in range(20_000))
    assert counts[0] / 20_000 == pytest.approx(1 / 20, abs=0.01)


@pytest.mark.parametrize(
    ("templates", "message"),
    [
        ([], "templates: a non-empty list of templates"),
        ([{"command": ["GET", "{key}"], "wieght": 1}], "templates[0].wieght: not a template field"),
        ([{"weight": 1}], "templates[0]: give either command or multi"),
        ([{"command": ["GET"], "multi": [["GET"]]}], "templates[0]: give either command or multi"),
        ([{"command": ["GET", "{value:x}"]}], "templates[0].command[1]: {value:x}: a size"),
        ([{"command": ["GET", "{value:4:rnd}"]}], "{value:SIZE} or {value:SIZE:random}"),
        ([{"command": ["GET", "{int:5:1}"]}], "templates[0].command[1]: {int:5:1}: LO above HI"),
        ([{"command": ["GET", "{float:a:1}"]}], "LO and HI must be numbers"),
        ([{"command": ["GET", "{key:3}"]}], "{key:3}: takes no argument"),
        ([{"command": ["X", "{tensor:float33:2}"]}], "{tensor:DTYPE:SHAPE}, DTYPE one of"),
        ([{"command": ["X", "{tensor:int8:2x0}"]}], "SHAPE: dimensions above 0"),
        ([{"command": ["{key}"]}], "templates[0].command[0]: the command's name"),
        ([{"command": ["EVAL", "return 1"]}], "templates[0].command[2]: EVAL needs its key count"),
        ([{"command": ["FCALL", "f", 2, "{key}"]}], "FCALL with 2 keys needs 2 key words"),
        ([{"command": ["GET", "{key}"], "weight": -1}], "templates[0].weight: a number, 0 or more"),
        ([{"command": ["GET", "{key}"], "weight": 0}], "templates: the weights add up to 0"),
        ([{"command": ["GET", "{key}"], "expect": "str"}], "templates[0].expect: one of string"),
        ([{"multi": []}], "templates[0].multi: a list of 1..64 commands"),
        ([{"multi": [["GET", "{key}"], "SET"]}], "templates[0].multi[1]: a list of 1..1024 words"),
        ([{"command": ["GET", None]}], "templates[0].command[1]: a word (text or number)"),
    ],
)
def test_an_unusable_template_is_refused_naming_its_field(
    templates: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_templates(templates)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_default_templates_are_the_set_get_mix() -> None:
    mix = RequestMix(keyspace=1000, set_ratio=0.25, value_size=16, pipeline=4, seed=3)
    assert mix.commands == ("GET", "SET")
    same = RequestMix(keyspace=1000, value_size=16, pipeline=4, seed=3,
                      templates=default_templates(0.25))  # fmt: skip
    assert [mix.next_batch() for _ in range(20)] == [same.next_batch() for _ in range(20)]


words = st.text(alphabet=st.sampled_from("abc{}:k"), max_size=8) | st.sampled_from(
    ["{key}", "{value:3}", "{int:0:9}", "{float:0:1}", "{tensor:int8:2x2}", "{value:2:random}"]
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(words, min_size=0, max_size=5), st.integers(1, 5), st.booleans()),
        min_size=1, max_size=4,
    ),
    st.integers(1, 8),
    st.integers(0, 2**32),
)  # fmt: skip
def test_batches_decode_to_the_templates_commands_with_matching_kinds_and_counts(
    shapes: list[tuple[list[str], int, bool]], pipeline: int, seed: int
) -> None:
    templates = []
    for index, (args, weight, block) in enumerate(shapes):
        command = [f"C{index}", *args]
        templates.append({"multi": [command, ["PING"]]} if block else {"command": command,
                                                                     "weight": weight})  # fmt: skip
    parsed = parse_templates(templates)
    keys = Keyspace(50, distribution=_sequential())  # no pool to build: quick examples
    mix = RequestMix(keyspace=keys, value_size=4, pipeline=pipeline, seed=seed, templates=parsed)
    for _ in range(5):
        batch = mix.next_batch()
        commands = parse_all(batch.payload)
        assert len(commands) == len(batch.kinds)
        assert sum(batch.counts) == sum(1 for kind in batch.kinds if kind != HIDDEN)
        assert sum(1 for kind in batch.kinds if kind != HIDDEN) == pipeline
        for words, kind in zip(commands, batch.kinds, strict=True):
            if kind == HIDDEN:
                assert words[0] in (b"MULTI", b"PING") or words[0].startswith(b"C")
            else:
                name = mix.commands[kind]
                assert words[0] == (b"EXEC" if name == "MULTI" else name.encode())
        assert batch.checks is None


def test_a_large_keyspace_gets_a_refreshed_pool_that_keeps_covering_it() -> None:
    keys = 10_000_000
    mix = RequestMix(keyspace=keys, set_ratio=0.5, value_size=8, pipeline=16, seed=5)
    assert mix.pooled and mix.refreshed
    pooled = len(mix._pool) * 16
    assert pooled == POOL_MAX_REQUESTS < POOL_REQUESTS_PER_KEY * keys
    def keys(rounds: int) -> set[bytes]:
        return {words[1] for _ in range(rounds * len(mix._pool))
                for words in parse_all(mix.next_batch().payload)}

    first_round = keys(1)
    later = keys(2) - first_round
    fresh = 2 * len(mix._pool) // REFRESH_EVERY * 16  # requests the refreshes encoded since
    assert len(later) > 0.9 * fresh  # new keys after the first round: the pool is renewed


def test_large_requests_are_encoded_afresh_and_sequential_keys_in_order() -> None:
    big = RequestMix(keyspace=10, value_size=0, pipeline=1, seed=1,
                     templates=parse_templates([{"command": ["SET", "k", "{value:1048576}"]}]))
    assert not big.pooled
    (words,) = parse_all(big.next_batch().payload)
    assert len(words[2]) == 1 << 20
    walk = RequestMix(keyspace=Keyspace(5, "k:", distribution=_sequential()), value_size=1,
                      pipeline=3, seed=1, key_start=3,
                      templates=parse_templates([{"command": ["GET", "{key}"]}]))  # fmt: skip
    assert not walk.pooled
    keys = [words[1] for _ in range(3) for words in parse_all(walk.next_batch().payload)]
    assert keys == [b"k:3", b"k:4", b"k:0", b"k:1", b"k:2", b"k:3", b"k:4", b"k:0", b"k:1"]


def _sequential() -> Distribution:
    return Distribution("sequential")


def test_request_size_estimate_counts_values_and_tensors() -> None:
    templates = parse_templates([{"command": ["SET", "{key}", "{value}"]},
                                 {"command": ["AI.TENSORSET", "t", "BLOB",
                                              "{tensor:float32:1x3x224x224}"]}])  # fmt: skip
    assert request_size_estimate(templates, 100) > 1 * 3 * 224 * 224 * 4


def test_the_agent_refuses_what_the_inventory_refuses() -> None:
    params = {"processes": 1, "connections": 1, "pipeline": 1, "set_ratio": 0.1,
              "keyspace": 10, "value_size": 1, "rate": None, "preload": False}  # fmt: skip
    with pytest.raises(DriverError, match=r"spec.params.templates\[0\].command\[1\]"):
        parse_params({**params, "templates": [{"command": ["GET", "{int:2:1}"]}]})
    with pytest.raises(DriverError, match=r"spec.params.distribution.s: required with kind zipf"):
        parse_params({**params, "distribution": {"kind": "zipf"}})
    parsed = parse_params({**params, "templates": [{"command": ["GET", "{key}"]}],
                           "distribution": {"kind": "hotset", "hot_requests": 0.9,
                                            "hot_keys": 0.1}})  # fmt: skip
    assert parsed.templates == ({"command": ["GET", "{key}"]},)
    assert parsed.distribution.kind == "hotset"


INVENTORY = """\
hosts:
  - {name: c1, address: 198.18.221.2, roles: [client]}
  - {name: s1, address: 198.18.221.3, roles: [server]}
servers:
  - {name: redis, host: s1}
benchmark:
  builtin:
"""


@pytest.mark.parametrize(
    ("builtin", "line"),
    [
        ("    templates:\n      - {command: [GET, '{key}'], expect: strin}\n",
         "bad.yaml:9: benchmark.builtin.templates[0].expect: must be 'string'"),
        ("    templates:\n      - {command: [EVAL, 'return 1', 2, '{key}']}\n",
         "bad.yaml:9: benchmark.builtin.templates[0]: command: EVAL with 2 keys needs 2 key"),
        ("    templates:\n      - {command: [GET, '{value:q}']}\n",
         "bad.yaml:9: benchmark.builtin.templates[0]: command[1]: {value:q}: a size"),
        ("    distribution: {kind: gaussian, mean: 0.5}\n",
         "bad.yaml:8: benchmark.builtin.distribution: sd: required with kind gaussian"),
        ("    distribution: {kind: hotset, hot_requests: 0.9, hot_keys: 1.5}\n",
         "bad.yaml:8: benchmark.builtin.distribution: hot_keys: a fraction of the keys"),
        ("    set_ratio: 0.5\n    templates:\n      - {command: [GET, '{key}']}\n",
         "bad.yaml:7: benchmark.builtin: give set_ratio or templates, not both"),
        ("    preload_command: [HSET, '{key}', f, 1]\n",
         "bad.yaml:7: benchmark.builtin: preload_command is the preload's command: set "
         "preload: true"),
        ("    preload: true\n    preload_command: [HSET, counter, f, 1]\n",
         "bad.yaml:7: benchmark.builtin: preload_command: needs {key}"),
        ("    preload: true\n    preload_command: [HSET, '{key}', f, '{value:q}']\n",
         "bad.yaml:7: benchmark.builtin: preload_command[3]: {value:q}: a size"),
    ],
)  # fmt: skip
def test_the_inventory_refuses_a_bad_template_distribution_or_preload_in_one_line(
    builtin: str, line: str
) -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(INVENTORY + builtin, "bad.yaml")
    assert len(caught.value.lines()) == 1
    assert caught.value.lines()[0].startswith(line), caught.value.lines()


def test_a_valid_mix_reaches_the_spec_unchanged() -> None:
    from coordinator.run.loadspec import builtin_params

    loaded = parse_inventory(INVENTORY + (
        "    templates:\n"
        "      - {command: [MGET, '{key}', '{key}'], weight: 3, expect: array}\n"
        "      - {multi: [[INCR, 'n:{int:1:9}'], [GET, '{key}']], name: TX}\n"
        "    distribution: {kind: zipf, s: 0.99}\n"
        "    key_prefix: 'user:'\n"
    ), "ok.yaml")  # fmt: skip
    params = builtin_params(loaded.inventory, False)
    assert params["templates"] == [
        {"command": ["MGET", "{key}", "{key}"], "weight": 3.0, "expect": "array"},
        {"multi": [["INCR", "n:{int:1:9}"], ["GET", "{key}"]], "weight": 1.0, "name": "TX"},
    ]
    assert params["distribution"] == {"kind": "zipf", "s": 0.99}
    parsed = parse_params(params | {"processes": 1})
    assert parsed.key_prefix == "user:"


def test_a_preload_command_reaches_the_agent_and_its_memory_estimate() -> None:
    from coordinator.run.loadspec import builtin_params

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


def test_the_documented_examples_are_valid_inventories() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "drivers.md").read_text()
    section = text.split("### Examples", 1)[1].split("## The redis-benchmark driver", 1)[0]
    blocks = [block.split("```", 1)[0] for block in section.split("```yaml\n")[1:]]
    assert len(blocks) == 6  # the last: the preload_command example
    for block in blocks:
        body = "".join("  " + line + "\n" for line in block.splitlines())
        loaded = parse_inventory(INVENTORY.removesuffix("  builtin:\n") + body, "doc.yaml")
        assert loaded.inventory.benchmark.builtin.templates
