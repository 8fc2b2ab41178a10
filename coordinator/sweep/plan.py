"""A sweep plan: the inventories, the parameters each cell sets, and the cells they expand to.

Pure. The plan is YAML read like an inventory (:mod:`coordinator.sweep.load` locates every
problem as ``FILE:LINE: PATH: message``). A parameter is an inventory field by its ``--set``
path (:mod:`coordinator.inventory.overrides`); a cell is one inventory with one value for each
parameter, run as a whole `coord run` into a directory of its own.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from coordinator.inventory.fields import Name, PositiveDuration
from coordinator.inventory.overrides import parse_path
from coordinator.inventory.yaml_source import PathKey

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
"""A parameter's value: what one ``--set PATH=VALUE`` can say in one word."""

RATE_PATH = "benchmark.builtin.rate"
"""The field an open-loop ramp varies: requests/s per client host."""
FLEET_FIELDS = frozenset({"hosts", "ssh", "agent"})
"""Top-level sections a sweep cannot vary: the fleet (agents on the hosts) is started once per
inventory, from these; a different host list or SSH setting is another inventory."""
MAX_CELLS = 10_000
"""More cells than this is a typo in a matrix, not a sweep anyone will wait for."""


class Model(BaseModel):
    """Base of the plan's models: strict types, unknown keys refused, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class InventoryEntry(Model):
    """One inventory the sweep runs every cell on (in a cloud sweep: one instance type)."""

    name: Name = Field(description="the inventory's name in the sweep: cell directories, report")
    file: str = Field(min_length=1, description="the inventory file, relative to the plan's")
    labels: dict[Name, StrictStr] = Field(
        default_factory=dict,
        description="free labels shown in the report: instance_type, region, ...")
    price_per_hour: Annotated[float, Field(gt=0)] | None = Field(
        None, description="what the inventory's machines cost per hour (any currency): the "
        "report's ops/s per price per hour and the cheapest inventory meeting the bound")


class Ramp(Model):
    """An open-loop rate ramp: ``benchmark.builtin.rate`` from ``start`` by ``step`` up to
    ``max``, stopped at the first rate whose p99 exceeds ``p99_bound`` or whose achieved
    throughput falls more than ``behind_percent`` below the rate asked for."""

    start: Annotated[float, Field(gt=0)] = Field(description="first rate, requests/s per client")
    step: Annotated[float, Field(gt=0)] = Field(description="added to the rate for each cell")
    max: Annotated[float, Field(gt=0)] = Field(description="highest rate tried")
    p99_bound: PositiveDuration = Field(description="the latency SLO: p99 above it stops the "
                                        "ramp")
    behind_percent: Annotated[float, Field(ge=0, le=100)] = Field(
        5.0, description="achieved throughput this far below the asked rate stops the ramp")

    @model_validator(mode="after")
    def _ordered(self) -> Ramp:
        if self.max < self.start:
            raise ValueError(f"max ({self.max:g}) is below start ({self.start:g})")
        if (self.max - self.start) / self.step + 1 > MAX_CELLS:
            raise ValueError(f"more than {MAX_CELLS} rates from start to max by step")
        return self

    def rates(self) -> list[float]:
        """Every rate of the ramp, in order."""
        count = int((self.max - self.start) / self.step + 1e-9) + 1
        return [self.start + index * self.step for index in range(count)]


class ReportSettings(Model):
    """What the sweep report ranks by."""

    p99_bound: PositiveDuration | None = Field(
        None, description="the latency SLO: the cheapest inventory whose clean cells meet it")


class SweepPlan(Model):
    """A sweep plan file (docs/sweeps.md): inventories, fixed settings, and exactly one of a
    parameter matrix, a list of cells or an open-loop rate ramp."""

    version: Literal[1] = Field(1, description="plan format version")
    name: Name = Field(description="the sweep's name: its default directory")
    inventories: list[InventoryEntry] = Field(min_length=1, description="every inventory")
    set: dict[str, Scalar] = Field(
        default_factory=dict, description="PATH: VALUE set on every cell, like --set")
    matrix: Annotated[dict[str, Annotated[list[Scalar], Field(min_length=1)]],
                      Field(min_length=1)] | None = Field(
        None, description="PATH: [values]: every combination is a cell")
    cells: Annotated[list[dict[str, Scalar]], Field(min_length=1)] | None = Field(
        None, description="the cells, each a mapping PATH: VALUE")
    ramp: Ramp | None = Field(None, description="an open-loop rate ramp")
    report: ReportSettings = Field(default_factory=ReportSettings, description="the report")

    @model_validator(mode="after")
    def _one_kind(self) -> SweepPlan:
        given = [kind for kind in ("matrix", "cells", "ramp") if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError("needs exactly one of matrix, cells or ramp"
                             + (f" ({' and '.join(given)} given)" if given else ""))
        names = [entry.name for entry in self.inventories]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"inventory name(s) given twice: {', '.join(twice)}")
        if self.matrix is not None:
            count = 1
            for values in self.matrix.values():
                count *= len(values)
            if count * len(self.inventories) > MAX_CELLS:
                raise ValueError(f"the matrix makes {count * len(self.inventories)} cells; at "
                                 f"most {MAX_CELLS}")
        return self

    def report_bound(self) -> float | None:
        """The report's latency bound, s: ``report.p99_bound``, else a ramp's SLO (the bound
        the ramp stopped at is the one its cells are judged by)."""
        if self.report.p99_bound is not None:
            return self.report.p99_bound
        return self.ramp.p99_bound if self.ramp is not None else None


def path_problems(plan: SweepPlan) -> list[tuple[PathKey, str]]:
    """Each parameter path that is not a field path, or is one a sweep cannot vary, with the
    plan path it is written at."""
    found: list[tuple[PathKey, str]] = []
    for where, path in _parameter_paths(plan):
        try:
            parts = parse_path(path)
        except ValueError as exc:
            found.append((where, str(exc)))
            continue
        if parts[0] in FLEET_FIELDS:
            found.append((where, f"{path}: cannot vary within a sweep: the agents are started "
                          "once per inventory; write one inventory per value instead"))
        elif plan.ramp is not None and path == RATE_PATH:
            found.append((where, f"{path}: the ramp sets it"))
    return found


def _parameter_paths(plan: SweepPlan) -> Iterator[tuple[PathKey, str]]:
    for path in plan.set:
        yield ("set", path), path
    for path in plan.matrix or {}:
        yield ("matrix", path), path
    for index, cell in enumerate(plan.cells or []):
        for path in cell:
            yield ("cells", index, path), path


@dataclass(frozen=True)
class Setting:
    """One ``PATH: VALUE`` a cell sets, and where the plan says it."""

    path: str
    value: Scalar
    origin: PathKey


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: an inventory and the parameters set on it."""

    inventory: InventoryEntry
    settings: tuple[Setting, ...]
    """The cell's own parameters (the plan's ``set`` is applied before them)."""
    ramp_step: int | None = None
    """The rate's position in the ramp (None: not a ramp cell)."""

    @property
    def parameters(self) -> dict[str, Scalar]:
        return {setting.path: setting.value for setting in self.settings}

    @property
    def slug(self) -> str:
        """The cell's directory name under its inventory's: its parameters as ``leaf=value``
        (readable, and the same for the same parameters whenever the plan is read)."""
        if not self.settings:
            return "default"
        text = "_".join(f"{setting.path.rsplit('.', 1)[-1]}={_word(setting.value)}"
                        for setting in self.settings)
        text = re.sub(r"[^A-Za-z0-9=._-]", "-", text)
        if len(text) > 80:
            digest = hashlib.sha256(repr(self.parameters).encode()).hexdigest()[:10]
            text = f"{text[:69]}-{digest}"
        return text

    @property
    def key(self) -> str:
        """The cell's identity in the index: ``inventory/slug``."""
        return f"{self.inventory.name}/{self.slug}"


def _word(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def expand(plan: SweepPlan) -> list[Cell]:
    """Every cell of the plan, inventory by inventory (one fleet each), in the plan's order:
    the matrix's combinations with its first path varying slowest, the cells as listed, or the
    ramp's rates upwards."""
    return [cell for entry in plan.inventories for cell in _cells_of(plan, entry)]


def _cells_of(plan: SweepPlan, entry: InventoryEntry) -> Iterator[Cell]:
    if plan.matrix is not None:
        axes = [[Setting(path, value, ("matrix", path, index))
                 for index, value in enumerate(values)]
                for path, values in plan.matrix.items()]
        for combination in itertools.product(*axes):
            yield Cell(entry, tuple(combination))
    elif plan.cells is not None:
        for number, cell in enumerate(plan.cells):
            yield Cell(entry, tuple(Setting(path, value, ("cells", number, path))
                                    for path, value in cell.items()))
    elif plan.ramp is not None:
        for step, rate in enumerate(plan.ramp.rates()):
            yield Cell(entry, (Setting(RATE_PATH, rate, ("ramp",)),), ramp_step=step)


def fixed_settings(plan: SweepPlan) -> tuple[Setting, ...]:
    """The plan's ``set``: applied to every cell before its own parameters."""
    return tuple(Setting(path, value, ("set", path)) for path, value in plan.set.items())
