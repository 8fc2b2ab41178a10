"""Property tests: any valid inventory survives dump -> load unchanged, and durations too."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Literal

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core.durations import format_duration, parse_duration
from coordinator.inventory.loader import load_inventory, parse_inventory
from coordinator.inventory.schema import (
    MAX_INTERVALS,
    Baseline,
    Benchmark,
    BuiltinDriver,
    Host,
    Inventory,
    Server,
    SSHDefaults,
    machine_key,
)

names = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.from_regex(r"[a-z]{1,8}(\.[a-z]{2,6}){0,2}", fullmatch=True),
)
durations = st.integers(min_value=1, max_value=7 * 24 * 3600 * 1000).map(lambda ms: ms / 1000)
WEEK_MS = 7 * 24 * 3600 * 1000


def bounded_durations(low_ms: int, high_ms: int = WEEK_MS) -> st.SearchStrategy[float]:
    return st.integers(min_value=low_ms, max_value=high_ms).map(lambda ms: ms / 1000)
SERVER_ROLES: list[list[Literal["client", "server"]]] = [["server"], ["server", "client"]]
texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=20
)


@st.composite
def inventories(draw: st.DrawFn) -> Inventory:
    host_names = draw(st.lists(names, min_size=2, max_size=6, unique=True))
    host_addresses = draw(st.lists(addresses, min_size=len(host_names),
                                   max_size=len(host_names), unique_by=machine_key))
    hosts = [
        Host(
            name=name,
            address=address,
            port=draw(st.integers(1, 65535)),
            user=draw(st.none() | names),
            key_file=draw(st.none() | st.just("~/.ssh/id_ed25519")),
            roles=["client"] if index else draw(st.sampled_from(SERVER_ROLES)),
            labels=draw(st.dictionaries(names, texts, max_size=3)),
        )
        for index, (name, address) in enumerate(zip(host_names, host_addresses, strict=True))
    ]
    servers = [
        Server(
            name=f"target{index}",
            host=draw(st.sampled_from(host_names)),
            port=draw(st.integers(1, 65535)),
            password=draw(st.none() | texts),
        )
        for index in range(draw(st.integers(1, 3)))
    ]
    interval_ms = draw(st.integers(10, 3600 * 1000))
    phase_ms = min(WEEK_MS, interval_ms * (MAX_INTERVALS // 2))
    benchmark = Benchmark(
        driver=draw(st.sampled_from(["builtin", "redis-benchmark", "memtier"])),
        repetitions=draw(st.integers(1, 1000)),
        warmup=draw(bounded_durations(0, phase_ms)),
        duration=draw(bounded_durations(1, phase_ms)),
        interval=interval_ms / 1000,
        builtin=BuiltinDriver(
            connections=draw(st.integers(1, 100_000)),
            pipeline=draw(st.integers(1, 10_000)),
            set_ratio=draw(st.floats(0, 1)),
            rate=draw(st.none() | st.floats(0.001, 1e9)),
        ),
    )
    return Inventory(
        name=draw(names),
        ssh=SSHDefaults(
            host_key_policy=draw(st.sampled_from(["strict", "accept-new"])),
            connect_timeout=draw(bounded_durations(1000)),
        ),
        hosts=hosts,
        servers=servers,
        benchmark=benchmark,
        baseline=Baseline(duration=float(draw(st.integers(1, 7 * 24 * 3600))),
                          enabled=draw(st.booleans())),
    )


def dump_inventory(inventory: Inventory) -> str:
    """YAML text that loads back to an equal inventory (defaults included, explicitly)."""
    data = inventory.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@settings(max_examples=150, deadline=None)
@given(inventories())
def test_any_valid_inventory_round_trips_through_dump_and_load(inventory: Inventory) -> None:
    loaded = parse_inventory(dump_inventory(inventory), "generated.yaml")
    assert loaded.inventory == inventory


@given(durations)
def test_durations_round_trip(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(0, 10_000), st.sampled_from(["ms", "s", "m", "h"]))
def test_durations_parse_their_unit(count: int, unit: str) -> None:
    scale = {"ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60), "h": Fraction(3600)}
    seconds = count * scale[unit]
    if seconds <= 7 * 24 * 3600:
        assert parse_duration(f"{count}{unit}") == float(seconds)


def test_example_inventories_are_valid() -> None:
    examples = sorted((Path(__file__).parents[2] / "inventory").glob("*.yaml"))
    assert {path.name for path in examples} >= {"two-clients.yaml", "cloud.yaml"}
    for path in examples:
        assert load_inventory(path).inventory.hosts


def test_inventory_reference_in_docs_is_up_to_date() -> None:
    from coordinator.inventory.docs import update_document

    path = Path(__file__).parents[2] / "docs" / "inventory.md"
    text = path.read_text()
    assert update_document(text) == text, "run: python -m coordinator.inventory.docs"
