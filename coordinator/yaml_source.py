"""Read YAML while remembering where every value came from.

pydantic reports a problem by its path (``hosts[2].port``); a user wants the line too. This
module composes the YAML node tree once, builds plain Python data from it, and keeps a map from
each path to the line that holds it. It also refuses what PyYAML accepts silently: a key given
twice in one mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from coordinator.errors import Problem

PathKey = tuple[str | int, ...]


@dataclass
class YamlDocument:
    """Plain data from one YAML text, with the line (1-based) of every path in it."""

    data: Any
    source: str
    lines: dict[PathKey, int] = field(default_factory=dict)
    origins: dict[PathKey, str] = field(default_factory=dict)
    """Paths whose values came from elsewhere than the text (``--set ...``), with their origin."""

    def where(self, path: PathKey) -> tuple[str, int | None]:
        """``(source, line)`` to report a problem at ``path`` (an override has no line)."""
        for end in range(len(path), 0, -1):
            origin = self.origins.get(path[:end])
            if origin is not None:
                return origin, None
        return self.source, self.line_of(path)

    def line_of(self, path: PathKey) -> int | None:
        """The line of ``path``, or of its nearest ancestor that the document holds."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


class YamlProblems(Exception):
    """Raised with the problems found while reading the text (syntax, duplicate keys)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = problems


def format_path(path: PathKey) -> str:
    """``("hosts", 2, "port")`` -> ``hosts[2].port``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def parse_yaml(text: str, source: str) -> YamlDocument:
    """Parse one YAML document; raise ``YamlProblems`` naming the line of any syntax error."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = exc.problem or exc.context or "invalid YAML"
        raise YamlProblems([Problem("", f"not valid YAML: {reason}", source, line)]) from exc
    except yaml.YAMLError as exc:
        raise YamlProblems([Problem("", f"not valid YAML: {exc}", source)]) from exc
    document = YamlDocument(data=None, source=source)
    if node is None:
        return document
    problems: list[Problem] = []
    constructor = yaml.SafeLoader("")
    document.data = _build(node, (), document, constructor, problems)
    if problems:
        raise YamlProblems(problems)
    return document


def _build(
    node: yaml.Node,
    path: PathKey,
    document: YamlDocument,
    constructor: yaml.SafeLoader,
    problems: list[Problem],
) -> Any:
    document.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                problems.append(
                    Problem(format_path(path), "keys must be plain words", document.source,
                            key_node.start_mark.line + 1)
                )
                continue
            child_key: str | int = key if isinstance(key, str) else str(key)
            child = (*path, child_key)
            if child_key in result:
                problems.append(
                    Problem(format_path(child), "key given twice in the same mapping",
                            document.source, key_node.start_mark.line + 1)
                )
                continue
            document.lines[child] = key_node.start_mark.line + 1
            result[child_key] = _build(value_node, child, document, constructor, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, index), document, constructor, problems)
            for index, item in enumerate(node.value)
        ]
    return constructor.construct_object(node, deep=True)
