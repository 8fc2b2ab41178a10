"""Command templates of the builtin driver: parsed, checked and expanded into RESP. Pure (no
I/O: a ``{file:...}`` placeholder is read by a function the caller gives).

A template is one command (``command``: its words) or a ``MULTI``/``EXEC`` block (``multi``:
its commands), a ``weight`` (its share of the requests: weight ÷ the sum of weights), a
``name`` (the command its latencies are recorded under; default: the first word in upper case,
``MULTI`` for a block; templates of the same name share it) and an optional ``expect``ed reply
type. Each word may hold placeholders, replaced at every expansion:

``{key}``                 a key of the keyspace (each ``{key}`` of a command draws its own)
``{key:last}``            the key the last ``{key}`` before it in the request drew (a model's
                          input named in two words: ``LOAD 1 {key} ... INPUTS 1 {key:last}``)
``{value}``               ``value_size`` fixed bytes; ``{value:N}``: N fixed bytes;
                          ``{value:N:random}``: N random bytes
``{file:PATH}``           the bytes of the file PATH on the client host (read once)
``{int:LO:HI}``           a random integer in ``[LO, HI]``
``{float:LO:HI}``         a random float in ``[LO, HI)``
``{seq}``                 a counter of the load process: 0, 1, 2...
``{tensor:DTYPE:SHAPE}``  a random binary blob of a tensor, e.g. ``{tensor:float32:1x3x224x224}``
                          (``prod(SHAPE) * size(DTYPE)`` bytes)

Anything else in braces is literal text (Lua tables, hash tags ``{user}``). ``EVAL``,
``EVALSHA``, ``FCALL`` (and their ``_RO`` forms) must give their key count as a number, with at
least that many words after it.

Replies: a ``MULTI`` block is ``n + 2`` replies (``OK``, ``QUEUED`` x n, then ``EXEC``'s array);
only the last is the block's, the others are counted as requests but recorded under no command
(:data:`HIDDEN`). An error reply is counted by its type wherever it comes; a reply whose type is
not the ``expect``ed one is counted as an error of type :data:`UNEXPECTED`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from random import Random
from typing import Any, Final

from agent.drivers.keyspace import Keyspace

#: The error type of a reply of another type than the template's ``expect``.
UNEXPECTED: Final = "UNEXPECTED"
#: Most templates in a mix, words in a command, commands in a ``MULTI`` block.
MAX_TEMPLATES: Final = 64
MAX_WORDS: Final = 1024
MAX_BLOCK: Final = 64
#: Largest value or tensor one placeholder may make (Redis's limit on a string).
MAX_BLOB: Final = 512 * 1024 * 1024

DTYPES: Final = {
    "float16": 2, "float32": 4, "float64": 8, "double": 8, "float": 4, "half": 2,
    "int8": 1, "int16": 2, "int32": 4, "int64": 8, "uint8": 1, "uint16": 2, "bool": 1,
}  # fmt: skip

#: What ``expect`` may name, and the replies (as hiredis gives them) each one accepts.
EXPECT: Final[Mapping[str, Callable[[Any], bool]]] = {
    "string": lambda reply: reply.__class__ is bytes,
    "ok": lambda reply: reply == b"OK",
    "integer": lambda reply: reply.__class__ is int,
    "nil": lambda reply: reply is None,
    "string_or_nil": lambda reply: reply is None or reply.__class__ is bytes,
    "array": lambda reply: reply.__class__ is list,
    "map": lambda reply: reply.__class__ is dict,
    "double": lambda reply: reply.__class__ is float,
}

_PLACEHOLDER: Final = re.compile(r"\{(key|value|file|int|float|seq|tensor)(?::([^{}]*))?\}")
_KEY_COUNTED: Final = frozenset(
    {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"}
)
#: A reply's command index when it is recorded under no command (inside a MULTI block).
HIDDEN: Final = -1

Word = str | int | float


@dataclass(frozen=True)
class CommandTemplate:
    """One template: a command (``command``) or a MULTI/EXEC block (``multi``)."""

    commands: tuple[tuple[str, ...], ...]
    block: bool
    weight: float
    name: str
    expect: str | None = None


class TemplateError(ValueError):
    """A template that cannot be used; the message names the field (``templates[1].weight``)."""


def parse_templates(data: Sequence[Mapping[str, Any]], where: str = "templates") -> tuple[
    CommandTemplate, ...
]:
    """Templates from their JSON/YAML form (a list of mappings); TemplateError naming the field."""
    if not isinstance(data, Sequence) or isinstance(data, str) or not data:
        raise TemplateError(f"{where}: a non-empty list of templates")
    if len(data) > MAX_TEMPLATES:
        raise TemplateError(f"{where}: at most {MAX_TEMPLATES} templates, got {len(data)}")
    templates = tuple(parse_template(item, f"{where}[{i}]") for i, item in enumerate(data))
    if sum(template.weight for template in templates) <= 0:
        raise TemplateError(f"{where}: the weights add up to 0")
    return templates


def parse_template(item: Mapping[str, Any], where: str) -> CommandTemplate:
    if not isinstance(item, Mapping):
        raise TemplateError(f"{where}: a mapping with command or multi")
    unknown = sorted(set(item) - {"command", "multi", "weight", "name", "expect"})
    if unknown:
        raise TemplateError(f"{where}.{unknown[0]}: not a template field")
    command, multi = item.get("command"), item.get("multi")
    if (command is None) == (multi is None):
        raise TemplateError(f"{where}: give either command or multi")
    if command is not None:
        commands: tuple[tuple[str, ...], ...] = (parse_command(command, f"{where}.command"),)
    else:
        if not isinstance(multi, list) or not 1 <= len(multi) <= MAX_BLOCK:
            raise TemplateError(f"{where}.multi: a list of 1..{MAX_BLOCK} commands")
        commands = tuple(parse_command(c, f"{where}.multi[{i}]") for i, c in enumerate(multi))
    weight = item.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
        raise TemplateError(f"{where}.weight: a number, 0 or more, got {weight!r}")
    name = item.get("name")
    if name is None:
        name = "MULTI" if multi is not None else commands[0][0].upper()
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.:|-]{1,64}", name):
        raise TemplateError(f"{where}.name: 1..64 letters, digits or _.:|-, got {name!r}")
    expect = item.get("expect")
    if expect is not None and expect not in EXPECT:
        raise TemplateError(f"{where}.expect: one of {', '.join(EXPECT)}, got {expect!r}")
    return CommandTemplate(commands, multi is not None, float(weight), name, expect)


def parse_command(words: Any, where: str) -> tuple[str, ...]:
    """A command's words as text, placeholders checked."""
    if not isinstance(words, list) or not 1 <= len(words) <= MAX_WORDS:
        raise TemplateError(f"{where}: a list of 1..{MAX_WORDS} words")
    texts = []
    for index, word in enumerate(words):
        if isinstance(word, bool) or not isinstance(word, str | int | float):
            raise TemplateError(f"{where}[{index}]: a word (text or number), got {word!r}")
        text = str(word)
        for match in _PLACEHOLDER.finditer(text):
            problem = placeholder_problem(match.group(1), match.group(2))
            if problem is not None:
                raise TemplateError(f"{where}[{index}]: {match.group(0)}: {problem}")
        texts.append(text)
    if not texts[0] or _PLACEHOLDER.search(texts[0]):
        raise TemplateError(f"{where}[0]: the command's name, without placeholders")
    head = texts[0].upper()
    if head in _KEY_COUNTED:
        if len(texts) < 3 or not re.fullmatch(r"\d{1,6}", texts[2]):
            raise TemplateError(f"{where}[2]: {head} needs its key count as a number")
        if len(texts) < 3 + int(texts[2]):
            raise TemplateError(f"{where}: {head} with {texts[2]} keys needs {texts[2]} key words")
    return tuple(texts)


def placeholder_problem(kind: str, argument: str | None) -> str | None:
    """What is wrong with placeholder ``{kind:argument}``; None when it is usable."""
    parts = argument.split(":") if argument is not None else []
    if kind == "key":
        return None if argument in (None, "last") else "takes no argument but last"
    if kind == "seq":
        return None if argument is None else "takes no argument"
    if kind == "value":
        if not parts:
            return None
        if len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("random", "fixed")):
            return "{value:SIZE} or {value:SIZE:random}"
        return None if _size(parts[0]) is not None else f"a size of 0..{MAX_BLOB} bytes"
    if kind == "file":
        return None if argument else "needs a path"
    if kind in ("int", "float"):
        if len(parts) != 2:
            return f"{{{kind}:LO:HI}}"
        try:
            low, high = (int(p) if kind == "int" else float(p) for p in parts)
        except ValueError:
            return f"LO and HI must be {'integers' if kind == 'int' else 'numbers'}"
        return None if low <= high else "LO above HI"
    # tensor
    if len(parts) != 2 or parts[0].lower() not in DTYPES:
        return f"{{tensor:DTYPE:SHAPE}}, DTYPE one of {', '.join(DTYPES)}"
    shape = tensor_shape(parts[1])
    if shape is None:
        return "SHAPE: dimensions above 0 joined by x, e.g. 1x3x224x224"
    if _product(shape) * DTYPES[parts[0].lower()] > MAX_BLOB:
        return f"larger than {MAX_BLOB} bytes"
    return None


def tensor_shape(text: str) -> tuple[int, ...] | None:
    if not re.fullmatch(r"\d{1,9}(x\d{1,9}){0,7}", text):
        return None
    shape = tuple(int(d) for d in text.split("x"))
    return shape if all(shape) else None


def _product(shape: tuple[int, ...]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def _size(text: str) -> int | None:
    if not re.fullmatch(r"\d{1,10}", text) or int(text) > MAX_BLOB:
        return None
    return int(text)


def request_size_estimate(templates: Sequence[CommandTemplate], value_size: int) -> int:
    """Bytes of the largest request the templates make (a file counted as 0: its size is
    known only on the client host), for the memory estimate."""
    largest = 0
    for template in templates:
        size = 0
        for words in template.commands:
            for word in words:
                size += 16 + len(word)
                for match in _PLACEHOLDER.finditer(word):
                    size += _placeholder_bytes(match.group(1), match.group(2), value_size)
        largest = max(largest, size)
    return largest


def _placeholder_bytes(kind: str, argument: str | None, value_size: int) -> int:
    parts = argument.split(":") if argument is not None else []
    if kind == "value":
        return int(parts[0]) if parts else value_size
    if kind == "tensor":
        return _product(tensor_shape(parts[1]) or ()) * DTYPES[parts[0].lower()]
    return 24  # a key, a number


def default_templates(set_ratio: float) -> tuple[CommandTemplate, ...]:
    """The SET/GET mix of ``set_ratio`` (GET first: command 0 is GET, 1 is SET)."""
    return (
        CommandTemplate((("GET", "{key}"),), False, 1.0 - set_ratio, "GET", None),
        CommandTemplate((("SET", "{key}", "{value}"),), False, set_ratio, "SET", None),
    )


def command_names(templates: Sequence[CommandTemplate]) -> tuple[str, ...]:
    """The recorder's commands: every template's name once, in order of first appearance."""
    return tuple(dict.fromkeys(template.name for template in templates))


# --- expansion ------------------------------------------------------------------------------------

Piece = bytes | Callable[[], bytes]


@dataclass
class Expander:
    """Templates compiled for one load process: :meth:`expand` gives a random template's
    request: its RESP bytes, the command index of each of its replies and each reply's check
    (None: any reply that is not an error)."""

    templates: Sequence[CommandTemplate]
    keyspace: Keyspace
    value_size: int
    random: Random
    read_file: Callable[[str], bytes] = field(default=lambda path: b"")
    key_start: int = 0
    key_source: Callable[[], int] | None = None
    """Where ``{key}`` takes its key's number from, instead of the keyspace's distribution
    (:class:`PreloadCommand`: the key being filled)."""

    def __post_init__(self) -> None:
        self.commands = command_names(self.templates)
        self.pick_key = self.key_source or self.keyspace.picker(self.random.random,
                                                                start=self.key_start)
        self._seq = 0
        self._files: dict[str, bytes] = {}
        #: ``{key:last}`` in a template: every ``{key}`` remembers what it drew.
        self._recalls_keys = any("{key:last}" in word for t in self.templates
                                 for words in t.commands for word in words)
        self._last_key = b""
        #: Requests must be encoded in order (a sequential walk, a counter): no pool.
        self.fresh_only = (
            self.keyspace.distribution.kind == "sequential" or uses_sequence(self.templates)
        )
        total = sum(t.weight for t in self.templates)
        cumulative, running = [], 0.0
        for template in self.templates:
            running += template.weight / total
            cumulative.append(running)
        cumulative[-1] = 1.0
        self.cumulative = cumulative
        self._compiled = [self._compile(template) for template in self.templates]

    def expand(self) -> tuple[bytes, tuple[int, ...], tuple[Callable[[Any], bool] | None, ...]]:
        """One request of a template drawn by weight."""
        draw = self.random.random()
        cumulative = self.cumulative
        index = 0
        while cumulative[index] <= draw:  # few templates: a scan beats bisect's call
            index += 1
        build, kinds, checks = self._compiled[index]
        return build(), kinds, checks

    def expand_indexed(self) -> tuple[
            int, bytes, tuple[int, ...], tuple[Callable[[Any], bool] | None, ...]]:
        """:meth:`expand`, with the index of the template drawn (a cluster routes by it)."""
        draw = self.random.random()
        cumulative = self.cumulative
        index = 0
        while cumulative[index] <= draw:
            index += 1
        build, kinds, checks = self._compiled[index]
        return index, build(), kinds, checks

    def compiled_command(self, index: int) -> Callable[[], bytes]:
        """Template ``index``'s request builder (each call: a new request's RESP bytes)."""
        return self._compiled[index][0]

    def _compile(
        self, template: CommandTemplate
    ) -> tuple[Callable[[], bytes], tuple[int, ...], tuple[Callable[[Any], bool] | None, ...]]:
        kind = self.commands.index(template.name)
        check = EXPECT[template.expect] if template.expect is not None else None
        commands = [self._compile_command(words) for words in template.commands]
        if template.block:
            commands = [_constant(b"*1\r\n$5\r\nMULTI\r\n"), *commands,
                        _constant(b"*1\r\n$4\r\nEXEC\r\n")]  # fmt: skip
            hidden = len(template.commands) + 1
            kinds = (HIDDEN,) * hidden + (kind,)
            checks: tuple[Callable[[Any], bool] | None, ...] = (None,) * hidden + (check,)
            return (lambda: b"".join(build() for build in commands)), kinds, checks
        return commands[0], (kind,), (check,)

    def _compile_command(self, words: tuple[str, ...]) -> Callable[[], bytes]:
        pieces: list[Piece] = [b"*%d\r\n" % len(words)]
        for word in words:
            parts = self._word_parts(word)
            if all(part.__class__ is bytes for part in parts):
                data = b"".join(parts)  # type: ignore[arg-type]
                pieces.append(b"$%d\r\n%s\r\n" % (len(data), data))
            elif len(parts) == 1:
                pieces.append(_bulk(parts[0]))  # type: ignore[arg-type]
            else:
                pieces.append(_bulk(_joined(parts)))
        merged: list[Piece] = []
        for piece in pieces:
            if piece.__class__ is bytes and merged and merged[-1].__class__ is bytes:
                merged[-1] = merged[-1] + piece
            else:
                merged.append(piece)
        if len(merged) == 1:
            constant: bytes = merged[0]  # type: ignore[assignment]
            return lambda: constant
        return _joined(merged)

    def _word_parts(self, word: str) -> list[Piece]:
        parts: list[Piece] = []
        position = 0
        for match in _PLACEHOLDER.finditer(word):
            if match.start() > position:
                parts.append(word[position : match.start()].encode())
            parts.append(self._placeholder(match.group(1), match.group(2)))
            position = match.end()
        if position < len(word) or not parts:
            parts.append(word[position:].encode())
        return parts

    def _placeholder(self, kind: str, argument: str | None) -> Piece:
        rnd = self.random
        parts = argument.split(":") if argument is not None else []
        if kind == "key" and argument == "last":
            return lambda: self._last_key
        if kind == "key":
            prefix = self.keyspace.prefix.encode()
            pick = self.pick_key
            if not self._recalls_keys:
                return lambda: prefix + b"%d" % pick()

            def remembered() -> bytes:
                self._last_key = prefix + b"%d" % pick()
                return self._last_key

            return remembered
        if kind == "seq":
            return self._next_seq
        if kind == "value":
            size = int(parts[0]) if parts else self.value_size
            if len(parts) == 2 and parts[1] == "random":
                return lambda: rnd.randbytes(size)
            return make_value(size)
        if kind == "file":
            path = argument or ""
            if path not in self._files:
                self._files[path] = self.read_file(path)
            return self._files[path]
        if kind == "int":
            low, high = int(parts[0]), int(parts[1])
            span = high - low + 1
            return lambda: b"%d" % (low + int(rnd.random() * span))
        if kind == "float":
            low_f, high_f = float(parts[0]), float(parts[1])
            width = high_f - low_f
            return lambda: b"%r" % (low_f + rnd.random() * width)
        size = _product(tensor_shape(parts[1]) or ()) * DTYPES[parts[0].lower()]
        return lambda: rnd.randbytes(size)

    def _next_seq(self) -> bytes:
        value = self._seq
        self._seq = value + 1
        return b"%d" % value


def parse_preload_command(words: Any, where: str) -> tuple[str, ...]:
    """The preload's own command (``benchmark.builtin.preload_command``), checked: one command
    with the templates' placeholders, its ``{key}`` the key it fills."""
    texts = parse_command(words, where)
    if not any(match.group(1) == "key" and match.group(2) is None
               for word in texts for match in _PLACEHOLDER.finditer(word)):
        raise TemplateError(f"{where}: needs {{key}}: the key each command fills")
    return texts


class PreloadCommand:
    """The preload's commands for given keys, one each: its words with every ``{key}`` the key
    being filled (the same key throughout one command) and the other placeholders as in
    templates (``HSET {key} name {value:16} score {int:0:1000}``). 2.6 µs a key for that one, in
    Python: the default preload (``SET {key} {value}``) keeps its batch encoding (0.4 µs)."""

    def __init__(self, words: Sequence[str], keyspace: Keyspace, value_size: int,
                 random: Random, read_file: Callable[[str], bytes]) -> None:
        self._key = 0
        template = CommandTemplate((tuple(words),), False, 1.0, words[0].upper(), None)
        expander = Expander([template], keyspace, value_size, random, read_file,
                            key_source=lambda: self._key)
        self._build = expander.compiled_command(0)

    def batch(self, numbers: Iterable[int]) -> bytes:
        """The commands filling keys ``numbers``, in order, as one payload."""
        build = self._build
        parts = []
        for number in numbers:
            self._key = number
            parts.append(build())
        return b"".join(parts)


def uses_sequence(templates: Sequence[CommandTemplate]) -> bool:
    """Whether a template holds ``{seq}``: its requests must then be encoded in order."""
    return any("{seq}" in word for t in templates for words in t.commands for word in words)


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _bulk(make: Callable[[], bytes]) -> Callable[[], bytes]:
    return lambda: (data := make(), b"$%d\r\n%s\r\n" % (len(data), data))[1]


def _joined(parts: list[Piece]) -> Callable[[], bytes]:
    frozen = tuple(parts)
    return lambda: b"".join(
        p if p.__class__ is bytes else p()  # type: ignore[operator]
        for p in frozen
    )


def make_value(size: int) -> bytes:
    """A value of ``size`` bytes (printable, so that a human reading the keys sees text)."""
    pattern = b"coord-builtin-value:"
    return (pattern * (size // len(pattern) + 1))[:size]
