"""The sweep's index (``index.json`` in the sweep directory): each cell's parameters, status
and headline figures, typed and versioned. Pure: built from the plan's cells and each cell's
``results.json`` (its figures, marks and verdicts are read from there, never recomputed).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from statistics import median
from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt

from coordinator.core import marks
from coordinator.core.figures import Model as RecordModel
from coordinator.core.figures import UTCTime
from coordinator.results import ResultsDocument
from coordinator.sweep.plan import Cell, Scalar

INDEX_FILE = "index.json"
SCHEMA_VERSION: Literal[1] = 1

CellStatus = Literal["pending", "running", "complete", "failed", "interrupted", "skipped"]
"""``pending``: not run yet; ``running``: started by a sweep that is still going (or was
killed without a word); ``complete``, ``failed``, ``interrupted``: as its ``results.json``
ended; ``skipped``: a ramp stopped below it."""


class Headline(RecordModel):
    """A cell's figures: the medians over its repetitions (``results.json``'s summary)."""

    repetitions: NonNegativeInt = Field(description="repetitions summarised")
    ops_per_sec: NonNegativeFloat = Field(description="throughput, replies/s (median)")
    p50_usec: NonNegativeFloat = Field(description="p50 latency, µs (median)")
    p99_usec: NonNegativeFloat = Field(description="p99 latency, µs (median)")
    p999_usec: NonNegativeFloat = Field(description="p99.9 latency, µs (median)")
    error_rate: NonNegativeFloat = Field(description="errors / requests (median)")
    sent_per_sec: NonNegativeFloat | None = Field(
        None, description="open loop: requests sent per second, all agents (median): the "
        "achieved rate (null: a closed loop, or an index older than the field)")
    behind_schedule: bool | None = Field(
        None, description="open loop: some agent fell behind its schedule in some repetition "
        "(null: a closed loop, or an index older than the field)")


class CellRecord(RecordModel):
    """One cell of the sweep."""

    key: str = Field(description="inventory/parameters: the cell's identity and directory")
    inventory: str = Field(description="the inventory's name in the plan")
    labels: dict[str, str] = Field(description="the inventory's labels from the plan")
    price_per_hour: float | None = Field(description="the inventory's price per hour")
    parameters: dict[str, Scalar] = Field(description="PATH: VALUE the cell set")
    ramp_step: NonNegativeInt | None = Field(None, description="position in the rate ramp")
    status: CellStatus = Field(description="how far the cell got")
    reason: str | None = Field(None, description="why it failed, or was skipped")
    ramp_stop: str | None = Field(
        None, description="this cell stopped the rate ramp, and why (p99 over the bound, or "
        "the achieved rate behind the rate asked)")
    started: UTCTime | None = Field(None, description="when its run started")
    finished: UTCTime | None = Field(None, description="when its run ended")
    headline: Headline | None = Field(None, description="its figures (null: none finished)")
    flags: list[str] = Field(
        default_factory=list, description="marks that keep it out of any ranking: flagged "
        "verdicts that fail --strict (client-bound, unstable, ...) and invalid marks")
    undecided: list[str] = Field(
        default_factory=list, description="verdicts of those kinds the run could not decide "
        "(a metric was missing): shown, not held against the cell")

    @property
    def clean(self) -> bool:
        """Complete with figures, and nothing says they do not describe the target."""
        return self.status == "complete" and self.headline is not None and not self.flags


class SweepIndex(RecordModel):
    """``index.json``: the sweep as it stands, rewritten after every change of a cell."""

    schema_version: Literal[1] = Field(description="version of this document's shape")
    name: str = Field(description="the plan's name")
    plan: str = Field(description="the plan file the sweep was last run from")
    created: UTCTime = Field(description="when the sweep first started")
    cells: list[CellRecord] = Field(description="every cell, in the order they run")

    def cell(self, key: str) -> CellRecord | None:
        return next((cell for cell in self.cells if cell.key == key), None)

    def with_cell(self, record: CellRecord) -> SweepIndex:
        """A copy with ``record`` in place of the cell of its key."""
        return self.model_copy(update={"cells": [record if cell.key == record.key else cell
                                                 for cell in self.cells]})


def planned_index(name: str, plan: str, cells: Sequence[Cell], created: datetime,
                  previous: SweepIndex | None = None) -> SweepIndex:
    """The index for ``cells``: each cell's record from ``previous`` when it has one (a
    resumed sweep), else pending."""
    records = []
    for cell in cells:
        known = previous.cell(cell.key) if previous is not None else None
        records.append(known if known is not None else pending(cell))
    return SweepIndex(schema_version=SCHEMA_VERSION, name=name, plan=plan,
                      created=previous.created if previous is not None else created,
                      cells=records)


def pending(cell: Cell) -> CellRecord:
    return CellRecord(key=cell.key, inventory=cell.inventory.name,
                      labels=dict(cell.inventory.labels),
                      price_per_hour=cell.inventory.price_per_hour,
                      parameters=cell.parameters, ramp_step=cell.ramp_step, status="pending")


_RANK_BREAKERS = frozenset(kind.name for kind in marks.REGISTRY
                           if kind.strict or kind.severity == "invalid")
"""Marks that keep a cell out of any ranking (client-bound, unstable, skewed, errors above the
threshold, no common window)."""


def _open_loop_figures(document: ResultsDocument) -> tuple[float | None, bool | None]:
    """(the achieved send rate, whether some client fell behind its schedule) when the cell
    ran an open loop (every agent reports both then; a closed loop reports neither)."""
    agents = [agent for repetition in document.repetitions for agent in repetition.agents]
    if not agents or any(agent.behind_schedule is None for agent in agents):
        return None, None
    sent = median(sum(agent.sent_per_sec or 0.0 for agent in repetition.agents)
                  for repetition in document.repetitions)
    return sent, any(agent.behind_schedule for agent in agents)


def from_results(record: CellRecord, document: ResultsDocument,
                 reason: str | None = None) -> CellRecord:
    """``record`` as ``document`` (the cell's ``results.json``) ended."""
    summary = document.summary
    sent_per_sec, behind_schedule = _open_loop_figures(document)
    headline = None if summary is None else Headline(
        repetitions=summary.repetitions, ops_per_sec=summary.ops_per_sec.median,
        p50_usec=summary.latency_usec.p50.median, p99_usec=summary.latency_usec.p99.median,
        p999_usec=summary.latency_usec.p999.median, error_rate=summary.error_rate.median,
        sent_per_sec=sent_per_sec, behind_schedule=behind_schedule)
    every_mark = [*document.marks, *(mark for rep in document.repetitions for mark in rep.marks)]
    flags = [mark for mark in dict.fromkeys(every_mark) if mark in _RANK_BREAKERS]
    verdicts = [*document.verdicts, *(v for rep in document.repetitions for v in rep.verdicts)]
    undecided = [name for name in dict.fromkeys(v.name for v in verdicts
                                                if v.state == "undecided")
                 if name in _RANK_BREAKERS and name not in flags]
    status: CellStatus = "running" if document.status == "running" else document.status
    if reason is None and document.failure is not None:
        reason = document.failure.reason
    return record.model_copy(update={
        "status": status, "reason": reason, "started": document.created,
        "finished": document.finished, "headline": headline, "flags": flags,
        "undecided": undecided})
