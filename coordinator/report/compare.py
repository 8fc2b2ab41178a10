"""Comparing runs: each figure's median and spread per run, its change against the first run,
and whether that change is beyond the runs' own noise. Pure: no I/O.

**The noise test: non-overlapping ranges.** A change is *beyond noise* when the range
(min-max) of the repetitions of one run does not overlap the other run's: every repetition of
one is worse than every repetition of the other. Otherwise it is *noise*, whatever its size.
Why this and not a Mann-Whitney U test: coord runs 3 repetitions by default, and with 3
against 3 the smallest two-sided p-value a Mann-Whitney U can give is 0.1, so it could never
call anything significant at 5 %; its most extreme outcome (U = 0, one-sided p = 0.05) *is*
the non-overlapping ranges. The ranges need no distribution, read at a glance in the table,
and get stricter, not looser, as repetitions are added (a wider range overlaps more easily).
A run with a single repetition has a range of one point: any change against it is beyond
noise, so compare runs of at least 3 repetitions (the methodology's minimum). Its false-alarm
rate on equal runs is 1/C(n+m, n) per figure and direction: 5 % with 3 against 3, 0.4 % with
5 against 5 (docs/reports.md).

A **regression** is a change beyond noise in the worse direction (throughput down; latency or
error rate up). ``--fail-on-regression PCT`` fails on regressions larger than PCT percent.

Before the figures, ``differences`` lists what differs between the runs' set-ups (inventory,
what each client's load ran with, software versions, histogram settings, platform): an
apples-to-oranges comparison is visible first. Runs made with different load drivers
(builtin, redis-benchmark, memtier) are said so before anything else: each tool times its
requests its own way (docs/drivers.md), so their figures differ by the tool as much as by the
server, and ``--fail-on-regression`` refuses to gate on them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import JsonValue

from coordinator.core.errors import CoordError
from coordinator.report.data import PLATFORM_FIELDS, optional
from coordinator.results.model import Repetition, ResultsDocument

Better = Literal["higher", "lower"]


class GateAcrossDrivers(CoordError):
    """``coord compare --fail-on-regression`` on runs of different load drivers: a gate holds
    one driver's runs against each other, never one tool against another (exit status 2)."""

    exit_status = 2


class RegressionFound(CoordError):
    """``coord compare --fail-on-regression``: a figure regressed beyond noise and beyond the
    threshold; one line per figure, exit status 1 (for CI gates)."""

    exit_status = 1

    def __init__(self, regressions: Sequence[str], threshold_percent: float) -> None:
        self.regressions = list(regressions)
        self.threshold_percent = threshold_percent
        super().__init__("; ".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"regression beyond noise and above {self.threshold_percent:g}%: {found}"
                for found in self.regressions]


@dataclass(frozen=True)
class FigureKind:
    """A figure compared: its name, unit, which way is better, how a repetition gives it."""

    name: str
    unit: str
    better: Better
    of: Callable[[Repetition], float]


def _latency(name: str) -> FigureKind:
    return FigureKind(name, "µs", "lower",
                      lambda repetition: float(getattr(repetition.latency_usec, name)))


FIGURES: tuple[FigureKind, ...] = (
    FigureKind("throughput", "ops/s", "higher", lambda r: r.ops_per_sec),
    *(_latency(name) for name in ("p50", "p90", "p95", "p99", "p999", "max")),
    FigureKind("error_rate", "fraction", "lower", lambda r: r.error_rate),
)


@dataclass(frozen=True)
class RunFigure:
    """One figure of one run: its repetitions' values and their median and range."""

    values: list[float]
    median: float
    low: float
    high: float
    change: float | None
    """Relative change of the median against the first run's (None: the first run, or a
    first median of zero)."""
    beyond_noise: bool
    regression: bool


@dataclass(frozen=True)
class FigureComparison:
    kind: FigureKind
    runs: list[RunFigure]


@dataclass(frozen=True)
class Difference:
    """One set-up item that differs: where, and its value in each run (None: absent)."""

    what: str
    values: list[JsonValue]


@dataclass(frozen=True)
class Comparison:
    labels: list[str]
    differences: list[Difference]
    figures: list[FigureComparison]
    drivers: list[str]
    """Each run's load driver (``benchmark.driver``), in the runs' order."""

    @property
    def drivers_differ(self) -> bool:
        return len(set(self.drivers)) > 1

    def drivers_note(self) -> str | None:
        """One line saying the runs' load drivers differ, or None when they are the same."""
        if not self.drivers_differ:
            return None
        runs = ", ".join(f"{label}: {driver}"
                         for label, driver in zip(self.labels, self.drivers, strict=True))
        return (f"the runs' load drivers differ ({runs}): each tool times requests its own "
                "way (docs/drivers.md), so a change below is the tools' as much as the "
                "server's")

    def regressions(self, threshold_percent: float) -> list[str]:
        """``<figure> in <run>: +x %`` for every regression beyond noise larger than
        ``threshold_percent``; refused (GateAcrossDrivers) when the runs' drivers differ."""
        if self.drivers_differ:
            raise GateAcrossDrivers(
                "--fail-on-regression: the runs' load drivers differ ("
                + ", ".join(self.drivers) + "); gate on runs of one driver")
        found = []
        for figure in self.figures:
            for label, run in zip(self.labels, figure.runs, strict=True):
                if run.regression and run.change is not None and \
                        abs(run.change) * 100 > threshold_percent:
                    found.append(f"{figure.kind.name} in {label}: {run.change:+.1%}")
        return found


def compare(labels: Sequence[str], documents: Sequence[ResultsDocument]) -> Comparison:
    """The comparison of ``documents`` (at least two, each with a repetition), the first the
    reference."""
    if len(documents) < 2:
        raise ValueError("comparing needs at least two runs")
    return Comparison(list(labels), differences(documents),
                      [_figure(kind, documents) for kind in FIGURES],
                      [driver_of(document) for document in documents])


def driver_of(document: ResultsDocument) -> str:
    """The run's load driver, from its inventory (``builtin`` when the inventory omits it,
    as the inventory's default)."""
    benchmark = document.inventory.get("benchmark")
    driver = benchmark.get("driver") if isinstance(benchmark, dict) else None
    return driver if isinstance(driver, str) else "builtin"


def _figure(kind: FigureKind, documents: Sequence[ResultsDocument]) -> FigureComparison:
    reference = [kind.of(r) for r in documents[0].repetitions]
    runs = []
    for position, document in enumerate(documents):
        values = [kind.of(r) for r in document.repetitions]
        median = float(statistics.median(values)) if values else 0.0
        reference_median = float(statistics.median(reference)) if reference else 0.0
        change = None
        if position and reference_median:
            change = (median - reference_median) / reference_median
        beyond = bool(position and values and reference and beyond_noise(reference, values))
        worse = median < reference_median if kind.better == "higher" else median > reference_median
        runs.append(RunFigure(values, median, min(values, default=0.0),
                              max(values, default=0.0), change, beyond,
                              beyond and worse))
    return FigureComparison(kind, runs)


def beyond_noise(reference: Sequence[float], other: Sequence[float]) -> bool:
    """Whether the two sets of repetitions' ranges do not overlap (see the module doc)."""
    return max(other) < min(reference) or min(other) > max(reference)


# --------------------------------------------------------------------------------------------
# Set-up differences


def setup(document: ResultsDocument) -> dict[str, JsonValue]:
    """What a run was set up with, flattened to ``path -> value``: the inventory as run, each
    client's load (``ran_with``), software versions, histogram settings and the platform."""
    flat: dict[str, JsonValue] = {"coord_version": document.coord_version}
    _flatten("inventory", {k: v for k, v in document.inventory.items() if k != "name"}, flat)
    for agent in document.agents:
        flat[f"agents.{agent.host}.agent_version"] = agent.agent_version
        flat[f"agents.{agent.host}.python"] = agent.python
        if agent.ran_with is not None:
            _flatten(f"agents.{agent.host}.ran_with", agent.ran_with.model_dump(mode="json"),
                     flat)
    _flatten("histograms", document.histograms.model_dump(mode="json"), flat)
    platform = optional(document, PLATFORM_FIELDS)
    if platform is not None:
        _flatten("platform", platform, flat)
    return flat


def _flatten(prefix: str, value: JsonValue, into: dict[str, JsonValue]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, into)
    else:
        into[prefix] = value


def differences(documents: Sequence[ResultsDocument]) -> list[Difference]:
    """Every set-up path whose value is not the same in all runs, in path order; paths that
    carry per-run facts by nature (an agent's interpreter path) are compared all the same."""
    setups = [setup(document) for document in documents]
    paths = sorted({path for flat in setups for path in flat})
    found = []
    for path in paths:
        values = [flat.get(path) for flat in setups]
        if any(value != values[0] for value in values[1:]):
            found.append(Difference(path, values))
    return found
