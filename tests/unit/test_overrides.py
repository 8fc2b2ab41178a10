"""`--set PATH=VALUE` overrides: validated like the file, errors name the override."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.core.errors import InventoryError
from coordinator.inventory.loader import load_inventory
from coordinator.inventory.overrides import parse_path

EXAMPLE = Path(__file__).parents[2] / "inventory" / "two-clients.yaml"


def problems(*overrides: str) -> list[str]:
    with pytest.raises(InventoryError) as raised:
        load_inventory(EXAMPLE, overrides)
    return raised.value.lines()


def test_an_override_changes_one_field() -> None:
    loaded = load_inventory(EXAMPLE, ["benchmark.duration=2m", "benchmark.builtin.pipeline=8"])
    assert loaded.inventory.benchmark.duration == 120
    assert loaded.inventory.benchmark.builtin.pipeline == 8
    assert loaded.inventory.benchmark.warmup == 5


def test_list_items_and_new_sections() -> None:
    loaded = load_inventory(EXAMPLE, ["hosts[1].port=2222", "agent.watchdog=5s"])
    assert loaded.inventory.hosts[1].port == 2222
    assert loaded.inventory.agent.watchdog == 5


def test_the_last_override_of_a_path_wins() -> None:
    loaded = load_inventory(EXAMPLE, ["benchmark.repetitions=4", "benchmark.repetitions=6"])
    assert loaded.inventory.benchmark.repetitions == 6


def test_invalid_values_are_reported_like_the_file_but_named_by_the_override() -> None:
    assert problems("benchmark.builtin.connections=0", "hosts[1].port=70000") == [
        "--set benchmark.builtin.connections=0: benchmark.builtin.connections: must be >= 1, "
        "got 0",
        "--set hosts[1].port=70000: hosts[1].port: must be 1..65535, got 70000",
    ]
    assert problems("benchmark.duration=30") == [
        "--set benchmark.duration=30: benchmark.duration: must be a duration with a unit, "
        "like 30s, got 30"
    ]


def test_unknown_fields_get_a_suggestion() -> None:
    assert problems("benchmark.duraton=5s") == [
        "--set benchmark.duraton=5s: benchmark.duraton: unknown key 'duraton' "
        "(did you mean 'duration'?)"
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("bad", "--set bad: must be PATH=VALUE, e.g. benchmark.duration=30s"),
        ("hosts[9].port=1", "--set hosts[9].port=1: hosts[9]: no such item"),
        ("benchmark..x=1", "--set benchmark..x=1: not a field path: 'benchmark..x'"),
        ("name.x=1", "--set name.x=1: name is not a mapping"),
        ("benchmark.warmup=[unclosed", "--set benchmark.warmup=[unclosed: the value is not "
                                       "valid YAML"),
    ],
)
def test_malformed_overrides(override: str, message: str) -> None:
    lines = problems(override)
    assert len(lines) == 1
    assert lines[0].startswith(message), lines


@given(st.lists(st.one_of(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
                          st.integers(0, 99)), min_size=1, max_size=5)
       .filter(lambda parts: isinstance(parts[0], str)))
def test_paths_round_trip(parts: list[str | int]) -> None:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    assert parse_path(text) == tuple(parts)


def test_an_override_from_another_option_is_named_by_it() -> None:
    with pytest.raises(InventoryError) as raised:
        load_inventory(EXAMPLE, [("benchmark.warmup=5x", "--warmup 5x")])
    assert raised.value.lines() == [
        "--warmup 5x: benchmark.warmup: must be a duration like 500ms, 5s, 2m or 1h30m, "
        "got '5x'"
    ]
