"""Which cache directories `coord agents clean` may remove whole. Pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.remote.cache_dir import cache_dir_refusal


@pytest.mark.parametrize("path", ["~/.cache/coord", "~/.cache/coord/", "/var/tmp/coord-agent",
                                  "/srv/bench/Coord", "~/coord"])
def test_coords_own_directories_may_be_removed(path: str) -> None:
    assert cache_dir_refusal(path) is None


@pytest.mark.parametrize(("path", "reason"), [
    ("/", "home or root directory"),
    ("~", "home or root directory"),
    ("~/", "home or root directory"),
    ("//", "home or root directory"),
    ("", "is empty"),
    ("~/.cache", "does not look like coord's own"),
    ("/home/bench", "does not look like coord's own"),
    ("~/coord/..", "contains '..'"),
    ("~/.cache/coord/../..", "contains '..'"),
    ("~root/.cache/coord", "another user's home"),
    ("cache/coord", "is relative"),
])
def test_anything_else_is_refused_with_the_reason(path: str, reason: str) -> None:
    refusal = cache_dir_refusal(path)
    assert refusal is not None and reason in refusal


@given(st.text(alphabet="/~.ab", max_size=12))
def test_a_path_without_coord_in_its_last_component_is_never_accepted(path: str) -> None:
    assert cache_dir_refusal(path) is not None
