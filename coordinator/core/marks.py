"""Every mark coord puts on a run or a repetition, declared once: name, scope, severity, meaning.

The run sets marks by these constants (never by a string literal), the results document
checks and documents them from :data:`MARKS`, and docs/results.md's marks table is rendered by
:func:`marks_table`, so a mark cannot be set without being documented. Pure: no I/O.
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
    "error_rate above benchmark.error_threshold")
NO_COMMON_WINDOW = MarkKind(
    "no-common-window", "repetition", "invalid",
    "no interval in which every agent measured completely; its figures are zero")
FORCED_OVER_RUN_LOCK = MarkKind(
    "forced-over-run-lock", "run", "warning",
    "--force ran it while another run held a host's run lock (forced_over says who); the two "
    "runs may have measured each other's load")

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
    ERROR_RATE_ABOVE_THRESHOLD, NO_COMMON_WINDOW, FORCED_OVER_RUN_LOCK, NO_BASELINE,
    BASELINE_INCOMPLETE, BASELINE_INCONSISTENT, NETWORK_DRIFT,
)
"""Every mark coord sets, in the order the docs list them."""

MARKS: Mapping[str, MarkKind] = {kind.name: kind for kind in REGISTRY}
"""The registry by mark name."""
MARK_MEANINGS: Mapping[str, str] = {kind.name: f"{kind.scope}: {kind.meaning}"
                                    for kind in REGISTRY}
"""Mark name -> ``"<scope>: <meaning>"`` (the results module's historical ``MARKS``)."""


def marks_table() -> str:
    """docs/results.md's marks table (markdown), one row per registered mark."""
    rows = ["| mark | on | severity | meaning |", "| --- | --- | --- | --- |"]
    rows += [f"| `{kind.name}` | {kind.scope} | {kind.severity} | {kind.meaning} |"
             for kind in REGISTRY]
    return "\n".join(rows)
