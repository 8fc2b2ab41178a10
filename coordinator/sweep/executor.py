"""Run a sweep: every cell a full run (:func:`coordinator.run.runner.run`) into its own
results directory, one fleet per inventory, the index rewritten after every cell.

Resumable: a cell whose ``results.json`` says complete is not run again. A failed cell is
recorded with its reason and the sweep goes on (with a new fleet if the failure lost an
agent). Ctrl-C stops the cell running (its run marks it interrupted), keeps every finished cell,
and says where they are.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from coordinator.core.errors import CoordError, UsageError
from coordinator.remote.deploy import DeployOptions, Transport
from coordinator.remote.fleet import Fleet
from coordinator.run.runner import RunInterrupted, RunRecord, RunView, check_targets, run
from coordinator.sweep.estimate import cell_seconds, seconds_left
from coordinator.sweep.index import CellRecord, SweepIndex, from_results, planned_index
from coordinator.sweep.load import LoadedSweep, PlannedCell
from coordinator.sweep.ramp import ramp_stop
from coordinator.sweep.store import cell_directory, finished_results, read_index, write_index


class SweepInterrupted(CoordError):
    """Ctrl-C (or SIGTERM) during a sweep; every finished cell is kept."""

    exit_status = 130


class SweepView(Protocol):
    """What a sweep reports while it goes."""

    def fleet_starting(self, inventory: str) -> None: ...

    def cell_started(self, done: int, total: int, record: CellRecord,
                     seconds_left: float) -> None: ...

    def cell_ended(self, done: int, total: int, record: CellRecord) -> None: ...

    def run_view(self) -> RunView: ...


@dataclass
class SweepOutcome:
    """Where the sweep is, its index, and how often each inventory's fleet was started."""

    directory: Path
    index: SweepIndex
    fleet_starts: dict[str, int] = field(default_factory=dict)


def resumed_index(loaded: LoadedSweep, directory: Path) -> SweepIndex:
    """The index for the plan's cells: a cell a previous sweep completed stays complete (its
    ``results.json`` says so), every other cell is to run."""
    previous = read_index(directory)
    if previous is not None and previous.name != loaded.plan.name:
        raise UsageError(f"{directory} holds the sweep {previous.name!r}, not "
                         f"{loaded.plan.name!r}; pass another --out")
    index = planned_index(loaded.plan.name, str(loaded.source),
                          [planned.cell for planned in loaded.cells],
                          datetime.now(timezone.utc), previous)
    for record in index.cells:
        if record.status == "complete" and finished_results(directory, record) is not None:
            continue
        if record.status != "pending":
            index = index.with_cell(record.model_copy(update={"status": "pending",
                                                              "ramp_stop": None}))
    return index


def run_sweep(loaded: LoadedSweep, directory: Path, view: SweepView,
              options: DeployOptions | None = None, *, transport: Transport | None = None,
              force: bool = False) -> SweepOutcome:
    """Run every cell of ``loaded`` not complete yet into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    sweep = _Sweep(loaded, directory, view, options, transport, force,
                   resumed_index(loaded, directory))
    sweep.save()
    try:
        for inventory in dict.fromkeys(p.cell.inventory.name for p in loaded.cells):
            sweep.run_inventory([p for p in loaded.cells if p.cell.inventory.name == inventory])
    except (KeyboardInterrupt, RunInterrupted):
        kept = sum(1 for cell in sweep.index.cells if cell.status == "complete")
        raise SweepInterrupted(f"interrupted; {kept} finished cell(s) kept in "
                               f"{directory / 'index.json'} (the same command resumes)") from None
    return SweepOutcome(directory, sweep.index, sweep.fleet_starts)


class _Sweep:
    """A sweep as it runs: its index, the timing of the cells run so far, the fleets started."""

    def __init__(self, loaded: LoadedSweep, directory: Path, view: SweepView,
                 options: DeployOptions | None, transport: Transport | None, force: bool,
                 index: SweepIndex) -> None:
        self.loaded, self.directory, self.view = loaded, directory, view
        self.options, self.transport, self.force = options, transport, force
        self.index = index
        self.fleet_starts: dict[str, int] = {}
        self.timed: list[tuple[float, float]] = []  # (seconds taken, seconds estimated)

    def save(self) -> None:
        write_index(self.directory, self.index)

    def update(self, record: CellRecord) -> CellRecord:
        self.index = self.index.with_cell(record)
        self.save()
        return record

    def record(self, planned: PlannedCell) -> CellRecord:
        found = self.index.cell(planned.cell.key)
        if found is None:
            raise RuntimeError(f"cell {planned.cell.key} is not in the index (a bug)")
        return found

    def done(self) -> int:
        return sum(1 for cell in self.index.cells if cell.status in ("complete", "skipped"))

    def run_inventory(self, cells: list[PlannedCell]) -> None:
        """The inventory's cells in order, over one fleet started at the first cell to run."""
        with contextlib.ExitStack() as fleets:
            fleet: Fleet | None = None
            stopped: str | None = None
            for planned in cells:
                record = self.record(planned)
                if stopped is not None:
                    self.update(record.model_copy(update={"status": "skipped",
                                                          "reason": stopped}))
                    continue
                if record.status != "complete":
                    if fleet is None or fleet.lost():
                        fleets.close()
                        fleet = fleets.enter_context(self.start_fleet(planned))
                    record = self.run_cell(fleet, planned, record)
                stopped = self.ramp_stopped(planned, record)

    @contextlib.contextmanager
    def start_fleet(self, planned: PlannedCell) -> Iterator[Fleet]:
        name = planned.cell.inventory.name
        self.view.fleet_starting(name)
        self.fleet_starts[name] = self.fleet_starts.get(name, 0) + 1
        with Fleet(planned.loaded.inventory, options=self.options,
                   view=self.view.run_view().deploying(), transport=self.transport) as fleet:
            yield fleet

    def run_cell(self, fleet: Fleet, planned: PlannedCell, record: CellRecord) -> CellRecord:
        total = len(self.index.cells)
        remaining = [(c.cell.inventory.name, c.loaded.inventory) for c in self.loaded.cells
                     if (self.record(c).status not in ("complete", "skipped"))]
        left = seconds_left(remaining, [t for t, _ in self.timed], [e for _, e in self.timed])
        self.view.cell_started(self.done(), total, record, left)
        began = time.monotonic()
        record = self.update(record.model_copy(update={
            "status": "running", "reason": None, "ramp_stop": None,
            "started": datetime.now(timezone.utc), "finished": None, "headline": None}))
        out = cell_directory(self.directory, record)
        run_record: RunRecord | None = None
        try:
            plan = check_targets(planned.loaded.inventory)
            run_record = RunRecord(plan, out, overwrite=True)
            outcome = run(fleet, plan, self.view.run_view(), record=run_record, force=self.force)
            record = from_results(record, outcome.document)
        except (RunInterrupted, KeyboardInterrupt):
            if run_record is not None:
                record = from_results(record, run_record.document)
            self.update(record.model_copy(update={"status": "interrupted",
                                                  "finished": datetime.now(timezone.utc)}))
            raise
        except CoordError as exc:
            reason = "; ".join(exc.lines())
            if run_record is not None:
                record = from_results(record, run_record.document, reason)
            record = record.model_copy(update={"status": "failed", "reason": reason,
                                               "finished": datetime.now(timezone.utc)})
        self.timed.append((time.monotonic() - began, cell_seconds(planned.loaded.inventory)))
        self.update(record)
        self.view.cell_ended(self.done(), total, record)
        return record

    def ramp_stopped(self, planned: PlannedCell, record: CellRecord) -> str | None:
        """The reason the ramp stops at this cell (recorded on it), or None to go on."""
        ramp = self.loaded.plan.ramp
        if ramp is None or planned.cell.ramp_step is None:
            return None
        stop = ramp_stop(ramp, record, len(planned.loaded.inventory.clients))
        if stop is None:
            return None
        self.update(record.model_copy(update={"ramp_stop": stop.reason}))
        return f"the ramp stopped below: {stop.reason}"


def still_to_run(loaded: LoadedSweep, index: SweepIndex) -> list[PlannedCell]:
    """The cells a run of the sweep would run now (``--dry-run``): every one not complete."""
    return [planned for planned in loaded.cells
            if (record := index.cell(planned.cell.key)) is None or record.status != "complete"]
