"""A verdict and its evidence, as ``results.json`` stores them, and the pieces every judge
shares (the thresholds, one metric's finding). Pure: no I/O.

Apart from :mod:`coordinator.core.verdicts` (which decides them) because the repetition's record
(:class:`coordinator.core.figures.Repetition`) holds its verdicts, and the judges read
repetitions: the records sit below both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from coordinator.core.marks import MarkKind

VerdictState = Literal["flagged", "clear", "undecided"]
"""``flagged``: the evidence crossed a threshold; ``clear``: every metric the verdict needs was
measured and none crossed; ``undecided``: a metric it needs is missing (the reason says which),
so coord does not guess."""


class Record(BaseModel):
    """Same rules as every results model: strict types, unknown keys refused, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Evidence(Record):
    """One measured fact behind a verdict."""

    metric: str = Field(description="what was measured (e.g. cpu_total_percent, "
                        "throughput_outlier_percent, start_skew_usec)")
    host: str | None = Field(description="the host it was measured on (null: all clients)")
    intervals: list[NonNegativeInt] = Field(
        description="the interval indices concerned (empty: the whole window or run)")
    value: float | None = Field(description="the value observed (the worst one; null: missing)")
    threshold: float | None = Field(description="the threshold it was compared with")
    detail: str = Field(description="the fact in words")


class Verdict(Record):
    """One verdict on a repetition (or, summarised, on the run)."""

    name: str = Field(description="the verdict, a mark name from the marks table")
    state: VerdictState = Field(description="flagged, clear or undecided")
    repetitions: list[NonNegativeInt] = Field(
        description="the repetition(s) it is about (empty: across repetitions)")
    hosts: list[str] = Field(description="the hosts it names (empty: not about one host)")
    summary: str = Field(description="what it means and what to do, in words; for undecided, "
                         "why it could not be decided")
    evidence: list[Evidence] = Field(description="the measured facts behind it")


class Thresholds(Protocol):
    """The thresholds verdicts are judged by: the inventory's ``benchmark.thresholds``
    (:class:`coordinator.inventory.schema.Thresholds`, where each is documented)."""

    @property
    def client_cpu_percent(self) -> float: ...
    @property
    def process_cpu_percent(self) -> float: ...
    @property
    def server_cpu_percent(self) -> float: ...
    @property
    def saturated_intervals_percent(self) -> float: ...
    @property
    def link_percent(self) -> float: ...
    @property
    def retransmits(self) -> int: ...
    @property
    def cov_percent(self) -> float: ...
    @property
    def trend_percent(self) -> float: ...
    @property
    def outlier_percent(self) -> float: ...
    @property
    def start_skew(self) -> float: ...
    @property
    def start_skew_interval_percent(self) -> float: ...
    @property
    def min_intervals(self) -> int: ...
    @property
    def settle_intervals(self) -> int: ...
    @property
    def settle_percent(self) -> float: ...


@dataclass(frozen=True)
class Finding:
    """What one metric says: flagged with its evidence, clear, or undecided with a reason."""

    state: VerdictState
    evidence: Evidence | None = None
    reason: str = ""


def combined_state(findings: Sequence[Finding]) -> VerdictState:
    """Flagged if one finding is; else undecided if one is; else clear."""
    states = {finding.state for finding in findings}
    if "flagged" in states:
        return "flagged"
    return "undecided" if "undecided" in states or not findings else "clear"


def verdict_of(kind: MarkKind, state: VerdictState, repetition: int, hosts: list[str],
             summary: str, findings: Sequence[Finding] = ()) -> Verdict:
    """A verdict of ``kind`` on one repetition, with the flagged findings' evidence."""
    evidence = [f.evidence for f in findings if f.evidence is not None]
    return Verdict(name=kind.name, state=state, repetitions=[repetition], hosts=hosts,
                   summary=summary, evidence=evidence)


def reasons(findings: Sequence[Finding]) -> str:
    """Why the undecided findings are undecided, in one phrase."""
    return "; ".join(f.reason for f in findings if f.state == "undecided")


def details(findings: Sequence[Finding]) -> str:
    """The flagged findings' facts, in one phrase."""
    return "; ".join(f.evidence.detail for f in findings if f.evidence is not None)
