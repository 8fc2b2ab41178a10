"""The netperf baseline's records, as ``results.json`` stores them, and their judgements: pure.

A baseline is one row per measured pair (client host → server host): every iteration's TCP_RR
figures, their medians, the spread of p50 across iterations, whether transactions/s agrees with
1 / mean latency (:func:`coordinator.core.netperf.inconsistent`), the optional TCP_STREAM
bandwidth, or the one-line error that stopped the pair. The run takes one before its first
repetition and one after its last; :func:`drift_lines` compares them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt

from coordinator.core import marks
from coordinator.core.netperf import (
    RR_COLUMNS,
    RRFigures,
    drifted,
    inconsistent,
    median_figures,
    spread,
)


class Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class BaselineFigures(Model):
    """One TCP_RR measurement (or the median of several): latencies in µs, and its rate."""

    min_usec: NonNegativeFloat = Field(description="lowest round trip, µs")
    mean_usec: NonNegativeFloat = Field(description="mean round trip, µs")
    p50_usec: NonNegativeFloat = Field(description="median round trip, µs")
    p90_usec: NonNegativeFloat = Field(description="90th percentile round trip, µs")
    p99_usec: NonNegativeFloat = Field(description="99th percentile round trip, µs")
    max_usec: NonNegativeFloat = Field(description="highest round trip, µs")
    stddev_usec: NonNegativeFloat = Field(description="standard deviation of round trips, µs")
    transactions_per_sec: NonNegativeFloat = Field(description="transactions per second")

    @classmethod
    def of(cls, figures: RRFigures) -> BaselineFigures:
        return cls(**{field: getattr(figures, field) for field in RR_COLUMNS.values()})

    def figures(self) -> RRFigures:
        return RRFigures(**{field: getattr(self, field) for field in RR_COLUMNS.values()})


class BaselinePair(Model):
    """One measured pair: netperf on the client host to the netserver of the server host."""

    client: str = Field(description="host netperf ran on")
    server: str = Field(description="host whose netserver answered")
    address: str = Field(description="address netperf connected to (the server host's)")
    request_size: NonNegativeInt = Field(description="TCP_RR request bytes")
    response_size: NonNegativeInt = Field(description="TCP_RR response bytes")
    iterations: list[BaselineFigures] = Field(description="each successful TCP_RR run")
    median: BaselineFigures | None = Field(
        description="each figure's median across iterations (null when none succeeded)")
    p50_spread_usec: NonNegativeFloat = Field(
        description="max - min of p50 across iterations: the pair's own noise")
    inconsistent: bool = Field(
        description="transactions/s disagrees with 1 / mean latency by more than 10 % in an "
        "iteration (netperf measured something else than one transaction in flight)")
    stream_mbps: NonNegativeFloat | None = Field(
        None, description="TCP_STREAM bandwidth, Mbit/s (null unless baseline.stream)")
    error: str | None = Field(
        None, description="why the pair (or one of its iterations) failed, in one line")

    @property
    def label(self) -> str:
        return f"{self.client} → {self.server}"


class Baselines(Model):
    """The run's netperf baselines: before the first repetition and after the last."""

    skipped: bool = Field(False, description="true when the run skipped them (--no-baseline "
                          "or baseline.enabled: false)")
    before: list[BaselinePair] = Field(default_factory=list,
                                       description="per pair, before the first repetition")
    after: list[BaselinePair] = Field(default_factory=list,
                                      description="per pair, after the last repetition")
    drift: list[str] = Field(
        default_factory=list, description="pairs whose p50 moved between before and after "
        "by more than their own spread across iterations (and than 1 µs), one line each")


def pair_record(client: str, server: str, address: str, sizes: tuple[int, int],
                iterations: Sequence[RRFigures], *, error: str | None = None,
                stream_mbps: float | None = None) -> BaselinePair:
    """A pair's row from its successful iterations (and the error that stopped the rest)."""
    p50s = [one.p50_usec for one in iterations]
    return BaselinePair(
        client=client, server=server, address=address, request_size=sizes[0],
        response_size=sizes[1], iterations=[BaselineFigures.of(one) for one in iterations],
        median=BaselineFigures.of(median_figures(iterations)) if iterations else None,
        p50_spread_usec=spread(p50s), inconsistent=any(inconsistent(one) for one in iterations),
        stream_mbps=stream_mbps, error=error)


def drift_lines(before: Sequence[BaselinePair], after: Sequence[BaselinePair]) -> list[str]:
    """One line per pair measured both times whose p50 moved beyond the pairs' own spread."""
    earlier = {(pair.client, pair.server): pair for pair in before}
    lines = []
    for pair in after:
        first = earlier.get((pair.client, pair.server))
        if first is None:
            continue
        then = [one.p50_usec for one in first.iterations]
        now = [one.p50_usec for one in pair.iterations]
        if drifted(then, now):
            lines.append(
                f"{pair.label}: p50 {statistics.median(then):g} µs before, "
                f"{statistics.median(now):g} µs after (spread {spread(then):g} / "
                f"{spread(now):g} µs)")
    return lines


def round_trip_for(baselines: Baselines | None, client: str, address: str) -> float | None:
    """The bare network's p50 round trip from ``client`` to the host at ``address`` (the
    median of the baseline before the benchmark), or None when it was not measured."""
    if baselines is None:
        return None
    for pair in baselines.before:
        if (pair.client, pair.address) == (client, address) and pair.median is not None:
            return pair.median.p50_usec
    return None


def baseline_marks(baselines: Baselines) -> list[str]:
    """The run marks the baselines call for (see :mod:`coordinator.core.marks`)."""
    if baselines.skipped:
        return [marks.NO_BASELINE.name]
    pairs = [*baselines.before, *baselines.after]
    found = []
    if any(pair.error is not None for pair in pairs):
        found.append(marks.BASELINE_INCOMPLETE.name)
    if any(pair.inconsistent for pair in pairs):
        found.append(marks.BASELINE_INCONSISTENT.name)
    if baselines.drift:
        found.append(marks.NETWORK_DRIFT.name)
    return found
