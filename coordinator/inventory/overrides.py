"""``--set PATH=VALUE``: change one inventory field for one run, without editing the file.

Pure. An override is applied to the parsed YAML data before validation, so it is validated
exactly like the file, with the same messages; problems under an overridden path name the
override (``--set benchmark.duration=0s: benchmark.duration: must be greater than 0``) instead
of a file line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from coordinator.core.errors import InventoryError, Problem
from coordinator.inventory.yaml_source import (
    PathKey,
    YamlDocument,
    YamlProblems,
    format_path,
    load_value,
)

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")


def parse_path(text: str) -> PathKey:
    """``hosts[1].port`` -> ``("hosts", 1, "port")``; ``ValueError`` if malformed."""
    parts: list[str | int] = []
    for chunk in text.split("."):
        match = _PART.fullmatch(chunk)
        if match is None:
            raise ValueError(f"not a field path: {text!r} (write it like benchmark.duration "
                             "or hosts[0].port)")
        parts.append(match.group(1))
        parts.extend(int(index) for index in re.findall(r"\[(\d+)\]", match.group(2)))
    return tuple(parts)


Override = str | tuple[str, str]
"""``PATH=VALUE``, or ``(PATH=VALUE, origin)`` when it came from another option than
``--set`` (``("benchmark.warmup=5x", "--warmup 5x")``): problems then name that option."""


def apply_overrides(document: YamlDocument, overrides: Sequence[Override]) -> None:
    """Apply each ``PATH=VALUE`` to ``document.data`` in order; record where values came from.

    VALUE is read as YAML (``50`` is a number, ``5s`` a string, ``[a, b]`` a list).
    Raises ``InventoryError`` listing every override that cannot be applied.
    """
    problems: list[Problem] = []
    for override in overrides:
        text, origin = override if isinstance(override, tuple) else (override, f"--set {override}")
        path_text, separator, value_text = text.partition("=")
        try:
            if not separator:
                raise ValueError("must be PATH=VALUE, e.g. benchmark.duration=30s")
            path = parse_path(path_text.strip())
            value = load_value(value_text, origin) if value_text.strip() else None
            if document.data is None:
                document.data = {}
            added = _first_new(document.data, path)
            _assign(document.data, path, value)
        except YamlProblems as exc:
            reasons = "; ".join(problem.message for problem in exc.problems)
            problems.append(Problem("", f"the value is not valid YAML: {reasons}", origin))
        except ValueError as exc:
            problems.append(Problem("", str(exc), origin))
        else:
            # A problem under what the override created (``--set a.b.c=1`` creates ``a``) is
            # the override's, not the line of the file that happens to be nearest.
            document.origins[added] = origin
    if problems:
        raise InventoryError(problems)


def _first_new(data: Any, path: PathKey) -> PathKey:
    """The shortest prefix of ``path`` that ``data`` does not hold yet (``path`` if all do)."""
    node = data
    for depth, part in enumerate(path):
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return path[: depth + 1]
        elif not isinstance(node, dict) or node.get(part) is None:
            return path[: depth + 1]
        node = node[part]
    return path


def _assign(data: Any, path: PathKey, value: Any) -> None:
    node = data
    for depth, part in enumerate(path[:-1]):
        node = _child(node, part, path[: depth + 1], create=not isinstance(path[depth + 1], int))
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ValueError(f"{format_path(path)}: no such item")
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ValueError(f"{format_path(path[:-1])} is not a mapping")


def _child(node: Any, part: str | int, where: PathKey, *, create: bool) -> Any:
    if isinstance(part, int):
        if not isinstance(node, list) or part >= len(node):
            raise ValueError(f"{format_path(where)}: no such item")
        return node[part]
    if not isinstance(node, dict):
        raise ValueError(f"{format_path(where[:-1])} is not a mapping")
    if part not in node or node[part] is None:
        if not create:
            raise ValueError(f"{format_path(where)}: no such list")
        node[part] = {}
    return node[part]
