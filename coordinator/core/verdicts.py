"""Verdicts: whether a repetition's figures can be trusted, decided from its evidence. Pure.

Figures and per-host metric series in, verdicts out (:class:`Verdict`, each with the metric,
the interval(s), the value and the threshold behind it). The kinds are registered in
:mod:`coordinator.core.marks` (the one registry of marks and verdicts); docs/methodology.md
explains each one, its threshold and what to do about it.

A verdict whose metrics are missing is ``undecided`` and says which are missing: it is never
guessed clear. A value exactly at a threshold does not flag ("above"), except the server's
CPU, which is bound "at or above" its threshold.

The host verdicts (client-, server-, network-bound) are in :mod:`coordinator.core.host_verdicts`,
from :class:`HostSeries`; this module judges the figures and the run, and gathers them all.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.core import marks
from coordinator.core.figures import Repetition
from coordinator.core.host_verdicts import HostSeries, host_verdicts
from coordinator.core.verdict_records import (
    Evidence,
    Finding,
    Thresholds,
    Verdict,
    combined_state,
    details,
    reasons,
    verdict_of,
)

__all__ = [
    "Evidence",
    "HostSeries",
    "Thresholds",
    "Verdict",
    "error_verdict",
    "flagged_marks",
    "host_verdicts",
    "repetition_verdicts",
    "run_verdicts",
    "skew_verdict",
    "strict_failures",
    "throughput_points",
    "too_short_verdict",
    "unstable_verdict",
]

# --------------------------------------------------------------------------------------------
# Figure verdicts: errors, unstable, skewed start, too short


def error_verdict(repetition: Repetition, error_threshold: float) -> Verdict:
    """Errors: the repetition's error rate above ``benchmark.error_threshold``. In a run
    loading several servers, each server's own rate (its clients' errors over its clients'
    requests): the repetition's own figures are the first server's, and a sum over servers
    would let one server's volume hide another's failures."""
    kind = marks.ERROR_RATE_ABOVE_THRESHOLD
    if repetition.targets:
        rates = [_ServerErrors(f"{name}: ", set(target.clients), target.error_rate,
                               target.errors) for name, target in repetition.targets.items()]
    else:
        rates = [_ServerErrors("", None, repetition.error_rate, repetition.errors)]
    failed = [rate for rate in rates if rate.rate > error_threshold]
    if failed:
        findings = [Finding("flagged", rate.evidence(repetition, error_threshold))
                    for rate in failed]
        return verdict_of(kind, "flagged", repetition.index, [],
                          f"{'; '.join(rate.failed() for rate in failed)}, above "
                          f"benchmark.error_threshold {error_threshold:.2%}: fix what makes "
                          f"them fail before trusting the figures", findings)
    within = "; ".join(f"{rate.server}error rate {rate.rate:.2%}" for rate in rates)
    return verdict_of(kind, "clear", repetition.index, [],
                      f"{within}, within {error_threshold:.2%}")


@dataclass(frozen=True)
class _ServerErrors:
    """One server's errors in a repetition: ``server`` prefixes its words (empty for the only
    one), ``clients`` are its clients (None: every agent)."""

    server: str
    clients: set[str] | None
    rate: float
    errors: dict[str, int]

    def by_type(self) -> str:
        return ", ".join(f"{name} {count}" for name, count in sorted(self.errors.items()))

    def failed(self) -> str:
        return f"{self.server}{self.rate:.2%} of requests failed ({self.by_type()})"

    def evidence(self, repetition: Repetition, error_threshold: float) -> Evidence:
        """The rate, with the window's intervals in which its clients counted errors."""
        failing = sorted({interval.index for agent in repetition.agents
                          if self.clients is None or agent.host in self.clients
                          for interval in agent.intervals
                          if interval.in_window and interval.errors})
        return Evidence(metric="error_rate", host=None, intervals=failing, value=self.rate,
                        threshold=error_threshold,
                        detail=f"{self.server}error rate {self.rate:.2%} "
                               f"({self.by_type() or 'no error'})")


def throughput_points(repetition: Repetition) -> list[tuple[int, float]]:
    """The window's throughput per interval, summed over every agent, replies/s."""
    totals: dict[int, float] = {}
    for agent in repetition.agents:
        for interval in agent.intervals:
            if interval.in_window:
                totals[interval.index] = totals.get(interval.index, 0.0) + interval.ops_per_sec
    return sorted(totals.items())


def trend_percent(points: Sequence[tuple[int, float]]) -> float:
    """The change of the least-squares line over the window, % of the mean (at least 2
    points, a positive mean)."""
    xs = [float(i) for i, _ in points]
    ys = [v for _, v in points]
    slope, _ = statistics.linear_regression(xs, ys)
    return slope * (xs[-1] - xs[0]) * 100 / statistics.fmean(ys)


def unstable_verdict(points: Sequence[tuple[int, float]], repetition: int,
                     thresholds: Thresholds) -> Verdict:
    """Unstable inside one repetition: a trend through the window, or one interval far from
    the window's median."""
    kind = marks.UNSTABLE
    if len(points) < 3:
        return verdict_of(kind, "undecided", repetition, [],
                        f"undecided: {len(points)} interval(s) in the window, fewer than 3: no "
                        f"trend or outlier can be told")
    values = [v for _, v in points]
    if statistics.fmean(values) <= 0:
        return verdict_of(kind, "undecided", repetition, [],
                        "undecided: no throughput in the window")
    findings = []
    change = trend_percent(points)
    if abs(change) > thresholds.trend_percent:
        direction = "rose" if change > 0 else "fell"
        findings.append(Finding("flagged", Evidence(
            metric="throughput_trend_percent", host=None,
            intervals=[points[0][0], points[-1][0]], value=change,
            threshold=thresholds.trend_percent,
            detail=f"throughput {direction} {abs(change):.1f} % of its mean from interval "
                   f"{points[0][0]} to {points[-1][0]}")))
    median = statistics.median(values)
    base = median if median > 0 else statistics.fmean(values)
    deviations = [(i, abs(v - median) * 100 / base, v) for i, v in points]
    far = [(i, d, v) for i, d, v in deviations if d > thresholds.outlier_percent]
    if far:
        worst = max(far, key=lambda item: item[1])
        named = ", ".join(f"interval {i} at {v:,.0f} ops/s" for i, _, v in far)
        findings.append(Finding("flagged", Evidence(
            metric="throughput_outlier_percent", host=None, intervals=[i for i, _, _ in far],
            value=worst[1], threshold=thresholds.outlier_percent,
            detail=f"{named}, up to {worst[1]:.0f} % from the median {median:,.0f} ops/s")))
    if findings:
        return verdict_of(kind, "flagged", repetition, [],
                        f"throughput was unstable: {details(findings)}; find what disturbed "
                        f"it (other load on the hosts, the server's background work, the "
                        f"network) and run again", findings)
    return verdict_of(kind, "clear", repetition, [],
                    f"throughput steady: trend {change:+.1f} %, every interval within "
                    f"{thresholds.outlier_percent:g} % of the median")


def skew_verdict(repetition: Repetition, interval_s: float, thresholds: Thresholds) -> Verdict:
    """Skewed start: the clients' start skew above the absolute threshold or above a share of
    an interval, whichever is smaller."""
    skew = repetition.start_skew_usec
    absolute = thresholds.start_skew * 1e6
    relative = interval_s * 1e6 * thresholds.start_skew_interval_percent / 100
    limit = min(absolute, relative)
    which = (f"benchmark.thresholds.start_skew {absolute / 1000:g} ms" if absolute <= relative else
             f"{thresholds.start_skew_interval_percent:g} % of the {interval_s:g} s interval")
    evidence = Evidence(metric="start_skew_usec", host=None, intervals=[], value=skew,
                        threshold=limit, detail=f"start skew {skew / 1000:.3f} ms")
    if skew > limit:
        return verdict_of(marks.SKEWED_START, "flagged", repetition.index, [],
                        f"the clients started {skew / 1000:.3f} ms apart, above {which}: the "
                        f"window's first interval mixes load from fewer clients; check the "
                        f"clock uncertainty (agents[].uncertainty_ns) and the hosts' load, or "
                        f"lengthen benchmark.interval", [Finding("flagged", evidence)])
    return verdict_of(marks.SKEWED_START, "clear", repetition.index, [],
                    f"start skew {skew / 1000:.3f} ms, within {which}")


def too_short_verdict(points: Sequence[tuple[int, float]], repetition: int,
                      thresholds: Thresholds) -> Verdict:
    """Too short: fewer intervals in the window than the minimum, or throughput still rising
    after the warm-up (the first intervals below the rest)."""
    kind, count, settle = marks.TOO_SHORT, len(points), thresholds.settle_intervals
    findings: list[Finding] = [Finding("clear")]
    if count < thresholds.min_intervals:
        findings.append(Finding("flagged", Evidence(
            metric="window_intervals", host=None, intervals=[i for i, _ in points],
            value=count, threshold=thresholds.min_intervals,
            detail=f"{count} interval(s) in the common window, fewer than "
                   f"{thresholds.min_intervals}")))
    if count < 2 * settle:
        findings.append(Finding("undecided", reason=f"{count} interval(s): fewer than twice "
                                                    f"thresholds.settle_intervals ({settle}), "
                                                    f"settling not judged"))
    else:
        first = statistics.fmean(v for _, v in points[:settle])
        rest = statistics.median(v for _, v in points[settle:])
        deficit = (rest - first) * 100 / rest if rest > 0 else 0.0
        if deficit > thresholds.settle_percent:
            findings.append(Finding("flagged", Evidence(
                metric="settle_deficit_percent", host=None,
                intervals=[i for i, _ in points[:settle]], value=deficit,
                threshold=thresholds.settle_percent,
                detail=f"the first {settle} intervals ran {deficit:.0f} % below the rest: "
                       f"throughput was still rising after the warm-up")))
    state = combined_state(findings)
    if state == "flagged":
        summary = (f"too short: {details(findings)}; lengthen benchmark.duration (more "
                   f"intervals) or benchmark.warmup (time to settle)")
    elif state == "undecided":
        summary = f"undecided: {reasons(findings)}"
    else:
        summary = f"{count} intervals, settled after the warm-up"
    return verdict_of(kind, state, repetition, [], summary, findings)


def repetition_verdicts(repetition: Repetition, *, interval_s: float, error_threshold: float,
                        thresholds: Thresholds, hosts: Sequence[HostSeries] | None,
                        server_hosts: Sequence[str] = ()) -> list[Verdict]:
    """Every verdict on one repetition, in the registry's order. ``hosts`` are the hosts'
    metric series (None: not sampled, so the host verdicts are undecided)."""
    points = throughput_points(repetition)
    verdicts = [
        error_verdict(repetition, error_threshold),
        *host_verdicts(repetition, hosts, server_hosts, interval_s, thresholds),
        unstable_verdict(points, repetition.index, thresholds),
        skew_verdict(repetition, interval_s, thresholds),
        too_short_verdict(points, repetition.index, thresholds),
    ]
    order = {kind.name: position for position, kind in enumerate(marks.VERDICTS)}
    return sorted(verdicts, key=lambda verdict: order[verdict.name])


def flagged_marks(verdicts: Sequence[Verdict]) -> list[str]:
    """The marks the flagged verdicts put on their repetition (or run), each once."""
    return list(dict.fromkeys(v.name for v in verdicts if v.state == "flagged"))


# --------------------------------------------------------------------------------------------
# The run: across repetitions, and the repetitions' verdicts summarised


def across_repetitions(repetitions: Sequence[Repetition], thresholds: Thresholds) -> Verdict:
    """Unstable across repetitions: throughput's coefficient of variation above the
    threshold."""
    kind, indices = marks.UNSTABLE_ACROSS_REPETITIONS, [r.index for r in repetitions]
    throughput = [r.ops_per_sec for r in repetitions]
    if len(throughput) < 2:
        return Verdict(name=kind.name, state="undecided", repetitions=indices, hosts=[],
                       summary="undecided: one repetition, no variation to judge", evidence=[])
    mean = statistics.fmean(throughput)
    if mean <= 0:
        return Verdict(name=kind.name, state="undecided", repetitions=indices, hosts=[],
                       summary="undecided: no throughput", evidence=[])
    cv = statistics.stdev(throughput) * 100 / mean
    evidence = Evidence(metric="throughput_cov_percent", host=None, intervals=[], value=cv,
                        threshold=thresholds.cov_percent,
                        detail=f"throughput CoV {cv:.1f} % over {len(throughput)} repetitions "
                               f"({min(throughput):,.0f} to {max(throughput):,.0f} ops/s)")
    if cv > thresholds.cov_percent:
        return Verdict(name=kind.name, state="flagged", repetitions=indices, hosts=[],
                       summary=f"the repetitions disagree: {evidence.detail}, above "
                               f"{thresholds.cov_percent:g} %; look for what differed between "
                               f"them, run longer or more repetitions", evidence=[evidence])
    return Verdict(name=kind.name, state="clear", repetitions=indices, hosts=[],
                   summary=evidence.detail, evidence=[evidence])


def _rolled_up(name: str, verdicts: Sequence[Verdict]) -> Verdict:
    """One kind's verdicts over the repetitions: the worst state, the repetitions in it."""
    state = combined_state([Finding(v.state) for v in verdicts])
    worst = [v for v in verdicts if v.state == state]
    if state == "clear":
        summary = f"clear in every repetition ({len(worst)})"
    else:
        summary = " | ".join(dict.fromkeys(f"repetition {r}: {v.summary}"
                                           for v in worst for r in v.repetitions))
    return Verdict(name=name, state=state,
                   repetitions=sorted({r for v in worst for r in v.repetitions}),
                   hosts=sorted({h for v in worst for h in v.hosts}), summary=summary,
                   evidence=[e for v in worst if state == "flagged" for e in v.evidence])


def run_verdicts(repetitions: Sequence[Repetition], thresholds: Thresholds) -> list[Verdict]:
    """The run's verdicts: the across-repetitions one, then each repetition verdict's kind
    summarised (its worst state and the repetitions in it)."""
    if not repetitions:
        return []
    by_name: dict[str, list[Verdict]] = {}
    for repetition in repetitions:
        for verdict in repetition.verdicts:
            by_name.setdefault(verdict.name, []).append(verdict)
    rolled = [_rolled_up(kind.name, by_name[kind.name]) for kind in marks.VERDICTS
              if kind.name in by_name]
    return [across_repetitions(repetitions, thresholds), *rolled]


def strict_failures(repetitions: Sequence[Repetition],
                    run_level: Sequence[Verdict]) -> list[str]:
    """One line per flagged verdict that fails ``coord run --strict`` (empty: it passes)."""
    lines = [f"repetition {r.index}: {v.name}: {v.summary}" for r in repetitions
             for v in r.verdicts if v.state == "flagged" and _strict(v.name)]
    lines += [f"run: {v.name}: {v.summary}" for v in run_level
              if v.state == "flagged" and _strict(v.name)
              and marks.MARKS[v.name].scope == "run"]
    return lines


def _strict(name: str) -> bool:
    kind = marks.MARKS.get(name)
    return kind is not None and kind.strict

