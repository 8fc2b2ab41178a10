"""The standard files beside ``results.json``, as text. Pure: no I/O.

- ``rep-<n>.hlog``: repetition n as an HdrHistogram interval log in the standard text format
  (``#[StartTime: ...]``, ``#[BaseTime: ...]``, the legend line, then one line per interval),
  so HdrHistogram's own ``HistogramLogProcessor`` and plotters read coord's data. Only the
  common window's intervals are logged (the warm-up and the edges are in ``results.json``), so
  the log adds up to exactly the repetition's figures. Each interval has one untagged line,
  every agent merged (what the processor reads by default), then one line per agent tagged
  ``Tag=<host>`` (``-tag <host>``). Timestamps are seconds since T0 (the BaseTime).
- ``summary.csv``: one row per repetition and one for the median across them, every figure a
  column, for spreadsheets.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from hdrh.histogram import HdrHistogram

from agent.histograms import HistogramParams
from coordinator.core.durations import parse_duration
from coordinator.core.figures import LATENCY_FIGURES
from coordinator.core.histograms import decode_histogram, encode_histogram, merge
from coordinator.results.model import Repetition, ResultsDocument

LOG_FORMAT_VERSION = "1.3"
LEGEND = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
MAX_UNIT_RATIO = 1000
"""The Interval_Max column is in ms (µs / 1000), as HdrHistogram's logs of ms data."""


def hlog_name(repetition_index: int) -> str:
    """The interval log of repetition ``repetition_index``."""
    return f"rep-{repetition_index}.hlog"


def histogram_params(document: ResultsDocument) -> HistogramParams:
    settings = document.histograms
    return HistogramParams(settings.lowest_usec, settings.highest_usec,
                           settings.significant_figures)


def interval_seconds(document: ResultsDocument) -> float:
    """The run's sampling interval, s: from a repetition's window, else the inventory."""
    for repetition in document.repetitions:
        if repetition.window.intervals:
            return repetition.window.seconds / repetition.window.intervals
    benchmark = document.inventory.get("benchmark")
    interval = benchmark.get("interval") if isinstance(benchmark, dict) else None
    if isinstance(interval, (int, float)):
        return float(interval)
    return parse_duration(interval) if isinstance(interval, str) else 1.0


def interval_log(document: ResultsDocument, repetition: Repetition) -> str:
    """The standard HdrHistogram interval log of ``repetition``'s common window."""
    params = histogram_params(document)
    interval_s = interval_seconds(document)
    started = repetition.started.timestamp()
    lines = [
        f"#[coord {document.coord_version}: repetition {repetition.index}, common window "
        f"only, values in µs; untagged lines: every agent merged, Tag=<host>: one agent]",
        f"#[Histogram log format version {LOG_FORMAT_VERSION}]",
        f"#[StartTime: {started:.3f} (seconds since epoch), "
        f"{repetition.started.astimezone(timezone.utc):%a %b %d %H:%M:%S UTC %Y}]",
        f"#[BaseTime: {started:.3f} (seconds since epoch)]",
        LEGEND,
    ]
    for index in _window_indices(repetition):
        per_agent = [
            (agent.host, interval.histogram, decode_histogram(interval.histogram, params))
            for agent in repetition.agents
            for interval in agent.intervals
            if interval.index == index and interval.in_window
        ]
        stamp = index * interval_s
        merged = merge((histogram for _, _, histogram in per_agent), params)
        lines.append(_line(None, stamp, interval_s, merged, encode_histogram(merged)))
        # an agent's line carries its interval histogram exactly as results.json stores it
        lines += [_line(host, stamp, interval_s, histogram, encoded)
                  for host, encoded, histogram in per_agent]
    return "\n".join(lines) + "\n"


def _window_indices(repetition: Repetition) -> list[int]:
    return sorted({interval.index for agent in repetition.agents
                   for interval in agent.intervals if interval.in_window})


def _line(tag: str | None, stamp: float, length: float, histogram: HdrHistogram,
          encoded: str) -> str:
    prefix = f"Tag={tag}," if tag is not None else ""
    maximum = histogram.get_max_value() / MAX_UNIT_RATIO if histogram.total_count else 0.0
    return f"{prefix}{stamp:.3f},{length:.3f},{maximum:.3f},{encoded}"


# --------------------------------------------------------------------------------------------
# summary.csv

Column = tuple[str, Callable[[Repetition], float]]


def _latency_column(name: str) -> Column:
    return (f"{name}_usec", lambda repetition: float(getattr(repetition.latency_usec, name)))


SUMMARY_COLUMNS: tuple[Column, ...] = (
    ("ops_per_sec", lambda r: r.ops_per_sec),
    *(_latency_column(name) for name in LATENCY_FIGURES),
    ("count", lambda r: float(r.count)),
    ("requests", lambda r: float(r.requests)),
    ("errors", lambda r: float(sum(r.errors.values()))),
    ("error_rate", lambda r: r.error_rate),
    ("overflow", lambda r: float(r.overflow)),
    ("start_skew_usec", lambda r: r.start_skew_usec),
    ("window_seconds", lambda r: r.window.seconds),
    ("bytes_sent", lambda r: float(r.bytes_sent)),
    ("bytes_received", lambda r: float(r.bytes_received)),
)
"""Every figure of a repetition, as a column of ``summary.csv`` (the median row takes each
column's median over the repetitions)."""


def summary_csv(document: ResultsDocument) -> str:
    """``summary.csv``: a row per repetition (``repetition`` = its index), then ``median``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["repetition", "started", *(name for name, _ in SUMMARY_COLUMNS), "marks"])
    for repetition in document.repetitions:
        writer.writerow([repetition.index, _iso(repetition.started),
                         *(_number(value(repetition)) for _, value in SUMMARY_COLUMNS),
                         " ".join(repetition.marks)])
    if document.repetitions:
        writer.writerow(["median", "", *(_number(m) for m in medians(document.repetitions)),
                         " ".join(document.marks)])
    return out.getvalue()


def medians(repetitions: Sequence[Repetition]) -> list[float]:
    """Each summary column's median over ``repetitions`` (at least one)."""
    return [float(statistics.median(value(r) for r in repetitions))
            for _, value in SUMMARY_COLUMNS]


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def _number(value: float) -> str:
    """Integers without a decimal point; other values with enough digits to read back."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
