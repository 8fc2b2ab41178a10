"""Read YAML while remembering where every value came from.

pydantic reports a problem by its path (``hosts[2].port``); a user wants the line too. This
module composes the YAML node tree once, builds plain Python data from it, and keeps a map from
each path to the line that holds it. It also refuses what PyYAML accepts silently: a key given
twice in one mapping.

Hostile text is refused while it is parsed, before anything is built from it: nesting deeper
than :data:`MAX_DEPTH` (the composer and the builder recurse), aliases that would expand to more
than :data:`MAX_ALIAS_NODES` nodes (an "alias bomb" is kilobytes of text that expands to
billions of nodes), integers longer than :data:`MAX_INT_DIGITS` digits, and values of a tag the
safe constructor cannot build. Events come from libyaml when it is installed (the pure-Python
scanner is ten times slower), through PyYAML's Python composer either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from coordinator.core.errors import Problem

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists read, aliases expanded (an inventory needs 4)."""
MAX_ALIAS_NODES = 100_000
"""Most nodes that aliases may add to a document by expansion (``<<: *defaults`` on every host
of a large inventory stays far below; an alias bomb goes far above)."""
MAX_INT_DIGITS = 100
"""Longest integer read: Python refuses to convert more than 4300 digits, and none is needed."""
_INT_TAG = "tag:yaml.org,2002:int"

try:
    from yaml._yaml import CParser as _CParser
except ImportError:  # PyYAML built without libyaml: the Python parser, slower, same events
    _CParser = None  # type: ignore[assignment, misc]

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


class _Refused(Exception):
    """Raised by the guard when the text is too deep or its aliases expand too far."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _GuardedLoader(yaml.composer.Composer, yaml.constructor.SafeConstructor,
                     yaml.resolver.Resolver):
    """PyYAML's safe composer fed by a parser whose events are checked as they are consumed.

    Each open mapping or list is a frame counting the nodes and the height of what it holds
    once aliases are expanded; an anchor remembers the size and height of its node, so an alias
    is charged for what it stands for before the composer reaches it.
    """

    def __init__(self, text: str) -> None:
        events: Any = _CParser(text) if _CParser is not None else yaml.SafeLoader(text)
        self._events = events
        self._frames: list[list[int]] = []  # [nodes, height] per open collection
        self._anchors: list[str | None] = []
        self._sizes: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, height)
        self._alias_nodes = 0
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)

    def check_event(self, *choices: Any) -> bool:
        return bool(self._events.check_event(*choices))

    def peek_event(self) -> Any:
        return self._events.peek_event()

    def get_event(self) -> Any:
        event = self._events.get_event()
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.CollectionStartEvent):
            if len(self._frames) >= MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", line)
            self._frames.append([0, 0])
            self._anchors.append(event.anchor)
        elif isinstance(event, yaml.CollectionEndEvent):
            nodes, height = self._frames.pop()
            anchor = self._anchors.pop()
            self._add(nodes + 1, height + 1, anchor)
        elif isinstance(event, yaml.ScalarEvent):
            self._add(1, 1, event.anchor)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in self._anchors:
                raise _Refused(f"alias *{event.anchor} is inside its own anchor (a structure "
                               "that contains itself)", line)
            nodes, height = self._sizes.get(event.anchor or "", (1, 1))
            self._alias_nodes += nodes
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise _Refused(f"aliases expand to more than {MAX_ALIAS_NODES} nodes "
                               "(an alias bomb?)", line)
            if len(self._frames) + height > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels once aliases are "
                               "expanded", line)
            self._add(nodes, height, None)
        return event

    def _add(self, nodes: int, height: int, anchor: str | None) -> None:
        if anchor is not None:
            self._sizes[anchor] = (nodes, height)
        if self._frames:
            frame = self._frames[-1]
            frame[0] += nodes
            frame[1] = max(frame[1], height)

    def dispose(self) -> None:
        self._events.dispose()


def load_value(text: str, source: str) -> Any:
    """One YAML value (a ``--set`` value), under the same limits as a document."""
    return parse_yaml(text, source).data


def parse_yaml(text: str, source: str) -> YamlDocument:
    """Parse one YAML document; raise ``YamlProblems`` naming the line of any syntax error."""
    loader = _GuardedLoader(text)
    try:
        node = loader.get_single_node()
    except _Refused as exc:
        raise YamlProblems([Problem("", f"refused: {exc.message}", source, exc.line)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = exc.problem or exc.context or "invalid YAML"
        raise YamlProblems([Problem("", f"not valid YAML: {reason}", source, line)]) from exc
    except yaml.YAMLError as exc:
        raise YamlProblems([Problem("", f"not valid YAML: {exc}", source)]) from exc
    finally:
        loader.dispose()
    document = YamlDocument(data=None, source=source)
    if node is None:
        return document
    problems: list[Problem] = []
    document.data = _build(node, (), document, loader, problems)
    if problems:
        raise YamlProblems(problems)
    return document


def _build(
    node: yaml.Node,
    path: PathKey,
    document: YamlDocument,
    constructor: yaml.constructor.SafeConstructor,
    problems: list[Problem],
) -> Any:
    document.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, path, document, constructor, problems)
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
    return _scalar(node, path, document, constructor, problems)


def _scalar(node: yaml.Node, path: PathKey, document: YamlDocument,
            constructor: yaml.constructor.SafeConstructor, problems: list[Problem]) -> Any:
    """The value of a scalar node (or of a collection used as a key: refused by the caller);
    a problem, and None, for a value the safe constructor cannot or should not build."""
    line = node.start_mark.line + 1
    if node.tag == _INT_TAG and isinstance(node.value, str) and len(node.value) > MAX_INT_DIGITS:
        problems.append(Problem(format_path(path), f"a number of {len(node.value)} characters; "
                                f"at most {MAX_INT_DIGITS} are read", document.source, line))
        return None
    try:
        return constructor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        reason = exc.problem if isinstance(exc, yaml.MarkedYAMLError) and exc.problem else exc
        problems.append(Problem(format_path(path), f"cannot be read: {reason}",
                                document.source, line))
        return None
