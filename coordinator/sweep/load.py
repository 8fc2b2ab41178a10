"""Read a sweep plan and check it whole before any host is touched: the plan's own shape, its
parameter paths, and every cell's inventory with the cell's parameters applied, each problem
one line ``FILE:LINE: PATH: message`` (the inventory loader's messages and locations).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from coordinator.core.errors import InventoryError, Problem
from coordinator.inventory.fields import FROM_TEXT
from coordinator.inventory.loader import (
    MAX_INVENTORY_BYTES,
    LoadedInventory,
    load_inventory,
    located_problems,
    read_regular_file,
)
from coordinator.inventory.overrides import Override
from coordinator.inventory.yaml_source import YamlDocument, YamlProblems, format_path, parse_yaml
from coordinator.sweep.plan import Cell, Setting, SweepPlan, expand, fixed_settings, path_problems


@dataclass(frozen=True)
class PlannedCell:
    """A cell and its inventory, validated with the cell's parameters."""

    cell: Cell
    loaded: LoadedInventory


@dataclass(frozen=True)
class LoadedSweep:
    """A checked plan: where it is, and every cell ready to run."""

    plan: SweepPlan
    source: Path
    cells: list[PlannedCell]


def load_sweep(path: Path) -> LoadedSweep:
    """The plan at ``path`` and its cells; ``InventoryError`` listing every problem found."""
    document = _read(path)
    try:
        plan = SweepPlan.model_validate(document.data, context=FROM_TEXT)
    except ValidationError as exc:
        raise InventoryError(located_problems(exc, document, SweepPlan)) from None
    wrong_paths = [Problem(format_path(where), message, str(path), document.line_of(where))
                   for where, message in path_problems(plan)]
    if wrong_paths:
        raise InventoryError(wrong_paths)
    base = path.parent
    cells: list[PlannedCell] = []
    problems: dict[str, Problem] = {}
    fixed = fixed_settings(plan)
    for cell in expand(plan):
        overrides = [_override(setting, document) for setting in (*fixed, *cell.settings)]
        try:
            loaded = load_inventory(base / cell.inventory.file, overrides)
        except InventoryError as exc:
            problems.update((str(problem), problem) for problem in exc.problems)
        else:
            cells.append(PlannedCell(cell, loaded))
    if problems:
        raise InventoryError(sorted(problems.values(), key=_plan_order))
    return LoadedSweep(plan, path, cells)


def _plan_order(problem: Problem) -> tuple[str, int]:
    """Problems in file order: a setting's problems carry ``PLAN:LINE`` as their source."""
    source, _, line = problem.source.rpartition(":")
    if source and line.isdigit():
        return source, int(line)
    return problem.source, problem.line or 0


def _read(path: Path) -> YamlDocument:
    source = str(path)
    try:
        raw = read_regular_file(path, MAX_INVENTORY_BYTES)
    except FileNotFoundError:
        raise InventoryError([Problem("", "no such file", source)]) from None
    except OSError as exc:
        raise InventoryError([Problem("", f"cannot be read: {exc.strerror or exc}",
                                      source)]) from None
    if len(raw) > MAX_INVENTORY_BYTES or b"\x00" in raw:
        raise InventoryError([Problem("", "is not a sweep plan (binary or over "
                                      f"{MAX_INVENTORY_BYTES} bytes)", source)])
    try:
        document = parse_yaml(raw.decode("utf-8", errors="replace"), source)
    except YamlProblems as exc:
        raise InventoryError(exc.problems) from None
    if not isinstance(document.data, dict):
        raise InventoryError([Problem("", "a sweep plan is a mapping (name, inventories, "
                                      "matrix, ...)", source, document.line_of(()))])
    return document


def _override(setting: Setting, document: YamlDocument) -> Override:
    """The setting as ``--set`` would give it, its problems located at the plan's line (JSON
    is YAML, and quotes a string that would otherwise read as a number)."""
    line = document.line_of(setting.origin)
    origin = f"{document.source}:{line}" if line is not None else document.source
    return f"{setting.path}={json.dumps(setting.value)}", origin
