"""Command templates routed over a Redis Cluster, pure: which words of a template are keys,
whether a multi-key template stays on one slot, and each request's slot.

A template's **key arguments** are the words holding a ``{key}`` placeholder, and for ``EVAL``,
``EVALSHA``, ``FCALL`` (and their ``_RO`` forms) the words their key count declares. A request
goes to the primary serving the slot of its first key argument; a template without one (``PING``,
an ``FCALL`` with no key) goes to whichever primary's connection asks.

A template whose requests hold more than one key argument (``MGET``, ``EVAL`` with 2 keys, a
``MULTI`` block) must keep them on one slot, as Redis Cluster requires: each key argument must
begin with the same **literal hash tag** (``{user}:{key}`` expands to ``{user}:key:12``, hashed
on ``user``), or the key prefix must hold one (``key_prefix: "{t}:"``). Otherwise the template is
refused before the load, naming it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from agent.drivers.cluster_redirects import command_at
from agent.drivers.cluster_slots import key_slot
from agent.drivers.templates import CommandTemplate, TemplateError

_KEY: Final = "{key}"
_ANY_PLACEHOLDER: Final = re.compile(r"\{(key|value|file|int|float|seq|tensor)(?::[^{}]*)?\}")
_KEY_COUNTED: Final = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
_VARIABLE: Final = "\x00"  # where a placeholder's bytes go, in a word's static view


@dataclass(frozen=True)
class KeyWord:
    """Where a key argument is in a template's request: its command (0 for a single command;
    in a MULTI block, the command's position among the block's, MULTI itself not counted) and
    its word."""

    command: int
    word: int


def key_words(template: CommandTemplate) -> tuple[KeyWord, ...]:
    """The template's key arguments, in order (see the module's docstring)."""
    found = []
    for position, words in enumerate(template.commands):
        declared: set[int] = set()
        if words[0].upper() in _KEY_COUNTED:
            declared = set(range(3, 3 + int(words[2])))
        found += [KeyWord(position, index) for index, word in enumerate(words)
                  if index in declared or (index > 0 and _KEY in word)]
    return tuple(found)


def static_tag(word: str, key_prefix: str) -> str | None:
    """The hash tag every expansion of ``word`` has, when it is fixed: a non-empty ``{...}`` of
    literal text, with only literal text before it (placeholders expanded, ``{key}`` into the
    prefix and a number). None when the tag (hence the slot) depends on the expansion."""
    view = _ANY_PLACEHOLDER.sub(
        lambda match: key_prefix + _VARIABLE if match.group(1) == "key" else _VARIABLE, word)
    start = view.find("{")
    if start < 0 or _VARIABLE in view[:start]:
        return None
    end = view.find("}", start + 1)
    if end <= start + 1 or _VARIABLE in view[start:end]:
        return None
    return view[start + 1 : end]


def check_templates(templates: Sequence[CommandTemplate], key_prefix: str,
                    where: str = "templates") -> tuple[tuple[KeyWord, ...], ...]:
    """Each template's key arguments; TemplateError naming a multi-key template whose keys do
    not share one literal hash tag (they could land on different slots)."""
    located = []
    for index, template in enumerate(templates):
        keys = key_words(template)
        if len(keys) > 1:
            tags = {static_tag(template.commands[k.command][k.word], key_prefix) for k in keys}
            if None in tags or len(tags) > 1:
                described = ", ".join(template.commands[k.command][k.word] for k in keys)
                raise TemplateError(
                    f"{where}[{index}]: {template.name} against a Redis Cluster: its keys "
                    f"({described}) must hash to one slot: give them one hash tag, e.g. "
                    f"{{user}}:{{key}}")
        located.append(keys)
    return tuple(located)


def command_words(command: bytes) -> list[bytes]:
    """The words of one RESP-encoded command (an array of bulk strings)."""
    end = command.index(b"\r\n")
    count = int(command[1:end])
    offset = end + 2
    words = []
    for _ in range(count):
        end = command.index(b"\r\n", offset)
        size = int(command[offset + 1 : end])
        words.append(command[end + 2 : end + 2 + size])
        offset = end + 4 + size
    return words


def request_slot(payload: bytes, first_key: KeyWord | None, block: bool) -> int | None:
    """The slot of a request (one template's expansion: a command, or MULTI ... EXEC), from its
    first key argument; None for a request without a key."""
    if first_key is None:
        return None
    command = command_at(payload, first_key.command + (1 if block else 0))
    return key_slot(command_words(command)[first_key.word])
