"""Load an inventory file and turn every way it can be wrong into located, one-line problems.

The rule is: whatever the file holds (nothing, a directory, binary junk, YAML of the wrong
shape, values of the wrong type), the caller gets either an :class:`Inventory` or an
:class:`InventoryError` listing each problem as ``file:line: path: what is wrong, got what``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from coordinator.core.collector import collector_paused
from coordinator.core.errors import InventoryError, Problem
from coordinator.inventory.checks import check_references, suggest
from coordinator.inventory.fields import FROM_TEXT
from coordinator.inventory.key_files import key_file_warnings
from coordinator.inventory.overrides import Override, apply_overrides
from coordinator.inventory.schema import Inventory
from coordinator.inventory.yaml_source import (
    PathKey,
    YamlDocument,
    YamlProblems,
    format_path,
    parse_yaml,
)

MAX_INVENTORY_BYTES = 4 * 1024 * 1024
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")
"""What an unknown key must look like to be echoed: a mistyped field name, not file content."""

_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a string (quote it if it looks like a number or a boolean)",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "missing": "required field is missing",
    "finite_number": "must be a finite number",
}


@dataclass(frozen=True)
class LoadedInventory:
    """A valid inventory, where it came from, and the warnings found while checking it."""

    inventory: Inventory
    source: str
    warnings: list[Problem] = field(default_factory=list)


def load_inventory(path: Path | str, overrides: Sequence[Override] = ()) -> LoadedInventory:
    """Read, parse and validate the inventory at ``path``; raise ``InventoryError`` if unusable.

    ``overrides`` are ``PATH=VALUE`` texts (``--set``), applied before validation.
    """
    source = str(path)
    text = _read_text(Path(path), source)
    with collector_paused():  # linear in the file's size: see coordinator.core.collector
        return parse_inventory(text, source, overrides)


def parse_inventory(text: str, source: str = "<inventory>",
                    overrides: Sequence[Override] = ()) -> LoadedInventory:
    """Validate inventory ``text``; ``source`` names it in messages."""
    try:
        document = parse_yaml(text, source)
    except YamlProblems as exc:
        raise InventoryError(exc.problems) from None
    apply_overrides(document, list(overrides))
    return validate_document(document)


def validate_document(document: YamlDocument) -> LoadedInventory:
    """Validate already parsed YAML data; problems are located with the document's lines."""
    source = document.source
    if document.data is None:
        raise InventoryError(
            [Problem("", "the file is empty; an inventory needs at least hosts and servers",
                     source)]
        )
    if not isinstance(document.data, dict):
        kind = _kind(document.data)
        raise InventoryError(
            [Problem("", f"the top level must be a mapping of sections (hosts, servers, ...), "
                     f"got {kind}", source, document.line_of(()))]
        )
    if document.data and not any(key in Inventory.model_fields for key in document.data):
        # Not an inventory at all (``/etc/passwd`` parses as a mapping): one line, and none of
        # the file's content, which may be secret.
        raise InventoryError(
            [Problem("", "is not a coord inventory: none of its top-level keys is a section "
                     f"({', '.join(Inventory.model_fields)})", source)]
        )
    try:
        inventory = Inventory.model_validate(document.data, context=FROM_TEXT)
    except ValidationError as exc:
        raise InventoryError(located_problems(exc, document)) from None
    located = [_locate(problem, document)
               for problem in [*check_references(inventory), *key_file_warnings(inventory)]]
    errors = [problem for problem in located if problem.severity == "error"]
    if errors:
        raise InventoryError(_sorted(errors))
    return LoadedInventory(
        inventory, source, _sorted([p for p in located if p.severity == "warning"])
    )


class IrregularFile(OSError):
    """A FIFO, device or socket where a regular file was expected."""

    def __init__(self) -> None:
        super().__init__(errno.EINVAL, "not a regular file (a FIFO, device or socket)")


def read_regular_file(path: Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of a regular file (a FIFO would block, ``/dev/zero`` never
    ends); the one byte past ``limit`` proves the file is over it. ``IsADirectoryError``,
    :class:`IrregularFile` or the ``OSError`` of opening or reading it otherwise."""
    _require_regular(path.stat().st_mode)
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as stream:
        _require_regular(os.fstat(stream.fileno()).st_mode)  # replaced since?
        return stream.read(limit + 1)


def _require_regular(mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory")
    if not stat.S_ISREG(mode):
        raise IrregularFile


def _read_text(path: Path, source: str) -> str:
    """The inventory's text, read by :func:`read_regular_file` under the size cap."""
    def fail(message: str) -> InventoryError:
        return InventoryError([Problem("", message, source)])

    try:
        raw = read_regular_file(path, MAX_INVENTORY_BYTES)
    except IsADirectoryError:
        raise fail("is a directory, not an inventory file") from None
    except IrregularFile:
        raise fail("is not a regular file (a FIFO, device or socket); an inventory must be "
                   "one") from None
    except FileNotFoundError:
        raise fail("no such file") from None
    except PermissionError:
        raise fail("permission denied") from None
    except OSError as exc:
        raise fail(f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_INVENTORY_BYTES:
        raise fail(f"is over {MAX_INVENTORY_BYTES} bytes; an inventory is at most "
                   f"{MAX_INVENTORY_BYTES} bytes")
    if b"\x00" in raw:
        raise fail("is a binary file, not YAML text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InventoryError(
            [Problem("", "is not UTF-8 text (binary data?)", source, line)]
        ) from None


def located_problems(error: ValidationError, document: YamlDocument,
                     root: type[BaseModel] = Inventory) -> list[Problem]:
    """Each refusal of ``root``'s validation as a one-line ``file:line: path: message``
    problem, sorted by line (other YAML files, sweep plans, share the inventory's messages)."""
    return _sorted([_problem(details, document, root) for details in error.errors()])


def _problem(error: ErrorDetails, document: YamlDocument,
             root: type[BaseModel] = Inventory) -> Problem:
    loc: PathKey = tuple(error["loc"])
    kind = error["type"]
    given = error.get("input")
    ctx = error.get("ctx") or {}
    show_given = True
    shown = loc
    if kind == "extra_forbidden":
        shown, message = _unknown_key(loc, root)
        show_given = False
    elif kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        options = [part.strip(" '") for part in expected.replace(" or ", ",").split(",")]
        message = f"must be {expected}"
        if isinstance(given, str):
            message += f", got {given!r}" + suggest(given, options)
            show_given = False
    elif kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
    elif kind in _TYPE_MESSAGES:
        message = _TYPE_MESSAGES[kind]
        show_given = kind != "missing"
    elif kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        bound = next(iter(ctx.values()))
        operator = {"greater_than_equal": ">=", "greater_than": ">",
                    "less_than_equal": "<=", "less_than": "<"}[kind]
        message = f"must be {operator} {bound}"
    elif kind == "too_short":
        message = f"must have at least {ctx.get('min_length')} item(s)"
    elif kind == "too_long":
        message = f"must have at most {ctx.get('max_length')} item(s)"
    elif kind == "string_pattern_mismatch":
        message = f"must match {ctx.get('pattern')}"
    else:
        message = error["msg"][:1].lower() + error["msg"][1:]
    if show_given:
        message += f", got {_render(given)}"
    source, line = document.where(loc)
    return Problem(format_path(shown), message, source, line)


def _unknown_key(loc: PathKey, root: type[BaseModel]) -> tuple[PathKey, str]:
    """The path to show and what to say about an unknown key; a key that is no field name (a
    line of some other file) is not echoed, and the path shown is its mapping's."""
    key = str(loc[-1])
    choices = _fields_at(loc[:-1], root)
    hint = ""
    if _FIELD_NAME.fullmatch(key):
        message = f"unknown key {key!r}"
        hint = suggest(key, choices)
    else:
        loc = loc[:-1]
        message = "unknown key (not shown: it is not a field name)"
    if choices and not hint:
        hint = f"; expected one of: {', '.join(choices)}"
    return loc, message + hint


def _locate(problem: Problem, document: YamlDocument) -> Problem:
    source, line = document.where(_parse_path(problem.path))
    return Problem(problem.path, problem.message, source, line, problem.severity)


def _parse_path(text: str) -> PathKey:
    parts: list[str | int] = []
    for chunk in text.replace("[", ".[").split("."):
        if not chunk:
            continue
        parts.append(int(chunk[1:-1]) if chunk.startswith("[") else chunk)
    return tuple(parts)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda problem: (problem.line or 0, problem.path))


def _fields_at(path: PathKey, root: type[BaseModel] = Inventory) -> list[str]:
    """The keys allowed in the mapping at ``path``, for did-you-mean hints."""
    model: type[BaseModel] | None = root
    for part in path:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        model = _model_in(info.annotation) if info is not None else None
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, typing.Union, types.UnionType, typing.Annotated):
        for argument in typing.get_args(annotation):
            found = _model_in(argument)
            if found is not None:
                return found
    return None


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def _render(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return repr(shown)
    if isinstance(value, int | float):
        text = str(value)
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
