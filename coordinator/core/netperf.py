"""netperf's output read into figures, and the checks on them: pure, no I/O.

The agent runs ``netperf`` with output selectors (``-- -o``, :data:`agent.baseline.RR_SELECTORS`)
and returns its exit status and text; this module reads that text. netperf prints a banner, a
header line naming each selected column and a line of values; columns are matched by their
header titles, so a netperf that orders them differently is still read right, and a missing
column is an error rather than a shifted figure. A failed netperf (no netserver listening, an
unknown test, a netserver that died mid-test) becomes one line saying so.

On figures: TCP_RR keeps one transaction in flight, so its transactions per second should be
about 1 / mean latency; :func:`inconsistent` flags a pair where they disagree by more than
:data:`CONSISTENCY_TOLERANCE` (a sign netperf measured something else than it says). Drift
(:func:`drifted`) compares the baselines taken before and after the benchmark against their own
spread across iterations.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

RR_COLUMNS: Final[dict[str, str]] = {
    "Minimum Latency Microseconds": "min_usec",
    "Mean Latency Microseconds": "mean_usec",
    "50th Percentile Latency Microseconds": "p50_usec",
    "90th Percentile Latency Microseconds": "p90_usec",
    "99th Percentile Latency Microseconds": "p99_usec",
    "Maximum Latency Microseconds": "max_usec",
    "Stddev Latency Microseconds": "stddev_usec",
    "Transaction Rate Tran/s": "transactions_per_sec",
}
"""netperf's header title of each TCP_RR selector -> the :class:`RRFigures` field."""

STREAM_COLUMNS: Final[dict[str, str]] = {
    "Throughput": "throughput",
    "Throughput Units": "units",
}

CONSISTENCY_TOLERANCE: Final = 0.10
"""Largest relative disagreement between transactions/s and 1 / mean latency."""
RESOLUTION_USEC: Final = 1.0
"""netperf reports latency percentiles in whole microseconds: a smaller change is no drift."""


class NetperfFailed(ValueError):
    """netperf produced no figures: ``message`` says why in one line."""


@dataclass(frozen=True)
class RRFigures:
    """One TCP_RR measurement: latencies in µs, and transactions per second."""

    min_usec: float
    mean_usec: float
    p50_usec: float
    p90_usec: float
    p99_usec: float
    max_usec: float
    stddev_usec: float
    transactions_per_sec: float


def parse_rr(output: str, exit_status: int) -> RRFigures:
    """A TCP_RR run's figures; :class:`NetperfFailed` if it failed or printed none."""
    values = _columns(output, exit_status, RR_COLUMNS)
    figures = RRFigures(**{field: _number(values[field], title)
                           for title, field in RR_COLUMNS.items()})
    if figures.transactions_per_sec <= 0:
        raise NetperfFailed("netperf counted no transaction")
    return figures


def parse_stream_mbps(output: str, exit_status: int) -> float:
    """A TCP_STREAM run's throughput in Mbit/s; :class:`NetperfFailed` otherwise."""
    values = _columns(output, exit_status, STREAM_COLUMNS)
    throughput = _number(values["throughput"], "Throughput")
    units = values["units"]
    if units == "10^6bits/s":
        return throughput
    if units == "10^9bits/s":
        return throughput * 1000
    if units == "10^3bits/s":
        return throughput / 1000
    raise NetperfFailed(f"netperf reported throughput in unknown units {units!r}")


def failure_reason(output: str) -> str:
    """Why netperf failed, in one line, from what it printed."""
    refused = re.search(r"netserver listening on (\S+) at port (\d+)", output)
    if refused:
        return (f"no netserver answered on {refused.group(1)} port {refused.group(2)} "
                f"(connection refused: netserver not running or stopped)")
    unknown = re.search(r"The test you requested \((\S+)\) is unknown", output)
    if unknown:
        return f"this netperf does not know the test {unknown.group(1)}"
    lost = re.search(r"\w+ failed: [^\n]+", output)
    if lost:
        return f"the connection to netserver was lost mid-test ({lost.group(0).strip()})"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[0][:200] if lines else "netperf printed nothing"


def _columns(output: str, exit_status: int, columns: dict[str, str]) -> dict[str, str]:
    """The value line under netperf's header line, by field name."""
    if exit_status != 0:
        raise NetperfFailed(f"{failure_reason(output)} (exit status {exit_status})")
    lines = output.splitlines()
    first = next(iter(columns))
    for index, line in enumerate(lines[:-1]):
        titles = [title.strip() for title in line.split(",")]
        if first in titles:
            values = [value.strip() for value in lines[index + 1].split(",")]
            if len(values) != len(titles):
                raise NetperfFailed(f"netperf printed {len(values)} values for "
                                    f"{len(titles)} columns")
            found = dict(zip(titles, values, strict=True))
            missing = [title for title in columns if title not in found]
            if missing:
                raise NetperfFailed(f"netperf printed no {missing[0]!r} column")
            return {field: found[title] for title, field in columns.items()}
    raise NetperfFailed(f"no figures in netperf's output: {failure_reason(output)}")


def _number(text: str, title: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise NetperfFailed(f"netperf's {title!r} is not a number: {text[:40]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise NetperfFailed(f"netperf's {title!r} is {text[:40]!r}")
    return value


def disagreement(figures: RRFigures) -> float:
    """How far transactions/s is from 1 / mean latency, relative to the latter."""
    if figures.mean_usec <= 0:
        return math.inf
    expected = 1e6 / figures.mean_usec
    return abs(figures.transactions_per_sec - expected) / expected


def inconsistent(figures: RRFigures) -> bool:
    """transactions/s and 1 / mean latency disagree by more than the tolerance."""
    return disagreement(figures) > CONSISTENCY_TOLERANCE


def median_figures(iterations: Sequence[RRFigures]) -> RRFigures:
    """Each figure's median across iterations (a percentile's median, never its mean)."""
    if not iterations:
        raise ValueError("no iteration to take a median of")
    return RRFigures(**{field: statistics.median(getattr(one, field) for one in iterations)
                        for field in RR_COLUMNS.values()})


def spread(values: Sequence[float]) -> float:
    """max - min of ``values`` (0 for fewer than two)."""
    return max(values) - min(values) if values else 0.0


def drifted(before: Sequence[float], after: Sequence[float]) -> bool:
    """The median moved further than either side's own spread across iterations (and than
    netperf's resolution): the network changed during the benchmark."""
    if not before or not after:
        return False
    allowed = max(spread(before), spread(after), RESOLUTION_USEC)
    return abs(statistics.median(after) - statistics.median(before)) > allowed
