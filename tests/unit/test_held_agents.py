"""Recognising an agent held by another coord process from a host's probe answer. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator.remote.leftovers import HeldAgent, held_agent

ARGV = ["/usr/bin/python3", "-I", "-c", "import sys; from agent.__main__ import run", "serve",
        "--watchdog", "15.0", "--state-dir", "~/.cache/coord", "--bundle-hash", "abc123", ""]


def answer(**changes: Any) -> dict[str, Any]:
    return {"found": True, "pid": 42, "port": 40001, "argv": ARGV, "uptime_s": 12.5,
            "rss_bytes": 30 << 20, **changes}


def test_a_serving_agent_is_held_with_its_bundle() -> None:
    assert held_agent(answer()) == HeldAgent(42, 40001, 12.5, 30 << 20, "abc123")


@pytest.mark.parametrize("probe", [
    {"found": False},
    answer(argv=["/usr/bin/python3", "-m", "http.server"]),  # the pid was recycled
    answer(argv=[w for w in ARGV if w != "serve"]),
    answer(pid="42"),
    answer(argv="not a list"),
])
def test_anything_but_a_live_serving_agent_is_none(probe: dict[str, Any]) -> None:
    assert held_agent(probe) is None


def test_an_agent_without_a_bundle_hash_is_held_with_none() -> None:
    argv = [*ARGV[:-3], ""]
    assert held_agent(answer(argv=argv)) == HeldAgent(42, 40001, 12.5, 30 << 20, None)
