"""Every mark and verdict coord puts on a run or a repetition, declared once: name, scope,
severity, meaning, and for a verdict whether it fails ``coord run --strict``.

The run sets marks by these constants (never by a string literal), the results document
checks and documents them from :data:`MARKS`, and docs/results.md's marks table is rendered by
:func:`marks_table`, so a mark cannot be set without being documented. A verdict
(:mod:`coordinator.core.verdicts`) is a mark decided from evidence: a flagged verdict is also a
mark of its name on the repetition (or the run). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Scope = Literal["run", "repetition"]
"""What a mark is on: the whole run (``marks``) or one repetition (``repetitions[].marks``)."""
Severity = Literal["note", "warning", "invalid"]
"""How much a mark weighs on the figures: ``note`` says how the run went and leaves them
comparable, ``warning`` means they may be skewed (compare with care), ``invalid`` means they do
not describe the target (do not compare)."""


@dataclass(frozen=True)
class MarkKind:
    """One kind of mark, as the registry declares it."""

    name: str
    scope: Scope
    severity: Severity
    meaning: str
    verdict: bool = False
    """Decided with evidence by :mod:`coordinator.core.verdicts` (flagged, clear or
    undecided), rather than set by the run from a plain fact."""
    strict: bool = False
    """A flagged verdict of this kind makes ``coord run --strict`` exit with status 3."""


FEWER_THAN_3_REPETITIONS = MarkKind(
    "fewer-than-3-repetitions", "run", "warning",
    "fewer than 3 repetitions were asked for (explicit override of the methodology's minimum)")
LOAD_ON_SERVER_HOST = MarkKind(
    "load-on-server-host", "run", "warning",
    "a client role runs on a host that also runs a target server")
HOSTS_SHARE_A_MACHINE = MarkKind(
    "hosts-share-a-machine", "run", "warning",
    "hosts with the same address (one machine) were allowed by hosts[].shares_machine; load "
    "from them is not load from separate machines")
INTERRUPTED = MarkKind(
    "interrupted", "run", "note",
    "stopped by Ctrl-C or a signal; the finished repetitions are kept")
ERROR_RATE_ABOVE_THRESHOLD = MarkKind(
    "error-rate-above-threshold", "repetition", "warning",
    "error_rate above benchmark.error_threshold", verdict=True, strict=True)
NO_COMMON_WINDOW = MarkKind(
    "no-common-window", "repetition", "invalid",
    "no interval in which every agent measured completely; its figures are zero")
FORCED_OVER_RUN_LOCK = MarkKind(
    "forced-over-run-lock", "run", "warning",
    "--force ran it while another run held a host's run lock (forced_over says who); the two "
    "runs may have measured each other's load")

CLIENT_BOUND = MarkKind(
    "client-bound", "repetition", "invalid",
    "a client host ran out of CPU (total, one load process or thread, or its cgroup quota): the "
    "figures measure the client, not the server", verdict=True, strict=True)
SERVER_BOUND = MarkKind(
    "server-bound", "repetition", "note",
    "the server process used the CPU it can while every client had headroom: what a benchmark "
    "of the server wants", verdict=True)
NETWORK_BOUND = MarkKind(
    "network-bound", "repetition", "warning",
    "an interface ran near its link speed, or TCP retransmitted, in the window", verdict=True)
UNSTABLE = MarkKind(
    "unstable", "repetition", "warning",
    "throughput trended through the window, or one interval was far from the others",
    verdict=True, strict=True)
UNSTABLE_ACROSS_REPETITIONS = MarkKind(
    "unstable-across-repetitions", "run", "warning",
    "throughput varied across repetitions more than benchmark.thresholds.cov_percent", verdict=True,
    strict=True)
SKEWED_START = MarkKind(
    "skewed-start", "repetition", "warning",
    "the clients' start skew exceeded benchmark.thresholds.start_skew or "
    "start_skew_interval_percent of an interval", verdict=True, strict=True)
TOO_SHORT = MarkKind(
    "too-short", "repetition", "warning",
    "fewer intervals in the window than benchmark.thresholds.min_intervals, or "
    "throughput still rising after the warm-up", verdict=True)
NO_BASELINE = MarkKind(
    "no-baseline", "run", "note",
    "the netperf baselines were skipped (--no-baseline or baseline.enabled: false): nothing "
    "says what the bare network could do")
BASELINE_INCOMPLETE = MarkKind(
    "baseline-incomplete", "run", "warning",
    "a pair of a netperf baseline failed (its row says why); the other pairs reported")
BASELINE_INCONSISTENT = MarkKind(
    "baseline-inconsistent", "run", "warning",
    "a baseline pair's transactions/s disagrees with 1 / mean latency by more than 10 %")
NETWORK_DRIFT = MarkKind(
    "network-drift", "run", "warning",
    "a pair's TCP_RR p50 moved between the baselines before and after the benchmark by more "
    "than its own spread across iterations (baselines.drift says which)")

REGISTRY: tuple[MarkKind, ...] = (
    FEWER_THAN_3_REPETITIONS, LOAD_ON_SERVER_HOST, HOSTS_SHARE_A_MACHINE, INTERRUPTED,
    ERROR_RATE_ABOVE_THRESHOLD, NO_COMMON_WINDOW, FORCED_OVER_RUN_LOCK,
    CLIENT_BOUND, SERVER_BOUND, NETWORK_BOUND, UNSTABLE, UNSTABLE_ACROSS_REPETITIONS,
    SKEWED_START, TOO_SHORT, NO_BASELINE, BASELINE_INCOMPLETE, BASELINE_INCONSISTENT,
    NETWORK_DRIFT,
)
"""Every mark coord sets, in the order the docs list them."""

MARKS: Mapping[str, MarkKind] = {kind.name: kind for kind in REGISTRY}
"""The registry by mark name."""
VERDICTS: tuple[MarkKind, ...] = tuple(kind for kind in REGISTRY if kind.verdict)
"""The marks decided as verdicts, in the order the summary shows them."""
MARK_MEANINGS: Mapping[str, str] = {kind.name: f"{kind.scope}: {kind.meaning}"
                                    for kind in REGISTRY}
"""Mark name -> ``"<scope>: <meaning>"`` (the results module's historical ``MARKS``)."""


def marks_table() -> str:
    """docs/results.md's marks table (markdown), one row per registered mark."""
    rows = ["| mark | on | severity | meaning | verdict |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| `{kind.name}` | {kind.scope} | {kind.severity} | {kind.meaning} | "
             f"{_verdict_cell(kind)} |" for kind in REGISTRY]
    return "\n".join(rows)


def _verdict_cell(kind: MarkKind) -> str:
    if not kind.verdict:
        return "-"
    return "yes, fails `--strict`" if kind.strict else "yes"
