"""Whether a host's ``agent.cache_dir`` is clearly coord's own, so `coord agents clean` may
remove it whole. Pure.

The cache directory holds only what coord put there (bundles, the agent's pid file and logs),
but it is an inventory value: a typo such as ``cache_dir: ~`` must never turn a clean-up into
the removal of a home directory. The rule is deliberately narrow: the last component must name
coord, and the path may not climb (``..``) or point at another user's home (``~user``). The
host side checks again after expanding ``~`` and resolving links (see
:mod:`coordinator.remote.leftovers`).
"""

from __future__ import annotations

import posixpath

MARKER = "coord"
"""A directory coord may remove whole has this word in its last component."""


def cache_dir_refusal(cache_dir: str) -> str | None:
    """Why ``cache_dir`` is not clearly coord's own directory, or None when it is."""
    text = cache_dir.strip()
    if not text:
        return "is empty"
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        return f"{cache_dir!r} contains '..'"
    if text.startswith("~") and not (text == "~" or text.startswith("~/")):
        return f"{cache_dir!r} names another user's home directory"
    if not text.startswith(("/", "~")):
        return f"{cache_dir!r} is relative: it depends on the login directory"
    name = posixpath.basename(posixpath.normpath(text))
    if name in ("", "~") or not parts or parts == ["~"]:
        return f"{cache_dir!r} is a home or root directory, not coord's own"
    if MARKER not in name.lower():
        return (f"{cache_dir!r} does not look like coord's own directory (its last component "
                f"must contain {MARKER!r})")
    return None
