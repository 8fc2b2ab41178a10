"""Readers of memtier_benchmark's output files: its HdrHistogram logs and its JSON totals.
Pure (text in, typed values out); every failure is a :class:`ToolOutputError` naming the tool.

``--hdr-file-prefix P`` makes memtier write, per run N, ``P_FULL_RUN_N.hgrm`` and one
``P_<COMMAND>_command_run_N.hgrm`` per command (``SET``, ``GET``, or the first word of each
``--command``), in the HdrHistogram log format (HdrHistogram_c's writer)::

    #[<title>]
    #[Histogram log format version 1.2]
    #[StartTime: 1795615398.990 (seconds since epoch), <date>]
    "StartTimestamp","EndTimestamp","Interval_Max","Interval_Compressed_Histogram"
    1795615398.990,1795615403.992,3471.0,HISTFAAAA...

memtier (at 2f74d61) writes ONE entry per file, covering the whole run: its histograms are
not per interval. Latencies are microseconds, in histograms of range 10..600000000 µs with
2 significant figures (so 8 µs buckets below 2.048 ms, then about 0.8 %). The reader also
takes the Java writer's layout (``"Interval_Length"`` legend, optional ``Tag=`` column,
timestamps relative to ``#[BaseTime: ...]``), so a log from either library reads the same.

``--json-out-file`` gives the totals: per command (``Sets``, ``Gets``, ``Hsets``...) the
count of replies and of connection errors, the run's start and finish (ms since the epoch),
and a per-second series of counts (:func:`read_json_totals`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from hdrh.histogram import HdrHistogram

from agent.drivers.tool_output import ToolOutputError

TOOL: Final = "memtier_benchmark"

#: The legends of the two writers: HdrHistogram_c (memtier) and Java / Python.
_LEGEND_END: Final = (
    '"StartTimestamp","EndTimestamp","Interval_Max","Interval_Compressed_Histogram"'
)
_LEGEND_LENGTH: Final = (
    '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
)
_TIME_HEADER: Final = re.compile(r"#\[(StartTime|BaseTime): *([0-9.eE+-]+)")
#: The Java reader's rule: a start below one year of seconds is relative to the log's base.
_ONE_YEAR_S: Final = 365 * 24 * 3600.0
#: The JSON's sections that are not commands.
_NOT_COMMANDS: Final = frozenset({"Runtime", "Totals"})


@dataclass(frozen=True)
class LogEntry:
    """One histogram of a log: ``start_s`` and ``end_s`` in seconds since the epoch, as the
    log says. memtier writes the same averaged instants as its JSON's ``Runtime``, so its end
    may come before its start (see :func:`run_window`): they are kept as written, and coord
    takes no time from them."""

    tag: str | None
    start_s: float
    end_s: float
    max_value: float
    histogram: HdrHistogram


def read_hdr_log(text: str, name: str = "histogram log") -> tuple[LogEntry, ...]:
    """The entries of an HdrHistogram log; ``name`` (the file's) goes into errors."""
    start_time: float | None = None
    base_time: float | None = None
    length_legend: bool | None = None
    entries: list[LogEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = _TIME_HEADER.match(line)
            if match:
                value = _finite(match.group(2), name, number)
                if match.group(1) == "StartTime":
                    start_time = value
                else:
                    base_time = value
            continue
        if line in (_LEGEND_END, _LEGEND_LENGTH):
            length_legend = line == _LEGEND_LENGTH
            continue
        if length_legend is None:
            raise _error(f"{name} line {number}: an entry before the legend line")
        entries.append(_entry(line, name, number, length_legend, start_time, base_time))
    if not entries:
        raise _error(f"{name}: no histogram in the log (truncated?)")
    return tuple(entries)


def _entry(
    line: str,
    name: str,
    number: int,
    length_legend: bool,
    start_time: float | None,
    base_time: float | None,
) -> LogEntry:
    fields = line.split(",")
    tag = None
    if fields[0].startswith("Tag="):
        tag = fields.pop(0)[len("Tag=") :]
    if len(fields) != 4:
        raise _error(f"{name} line {number}: expected 4 fields, got {len(fields)}")
    start, second, max_value = (_finite(field, name, number) for field in fields[:3])
    if length_legend:
        base = base_time if base_time is not None else (start_time or 0.0)
        if start < _ONE_YEAR_S:
            start += base
        end = start + second
    else:
        end = second
    try:
        histogram = HdrHistogram.decode(fields[3].encode("ascii"))
    except Exception as exc:  # hdrh raises TypeError, zlib.error, its own cookie errors...
        raise _error(f"{name} line {number}: not an encoded histogram ({exc})") from exc
    return LogEntry(tag, start, end, max_value, histogram)


@dataclass(frozen=True)
class CommandTotals:
    """One command's totals from the JSON: replies counted, connection errors, and the
    per-second series of reply counts (second 0 is the run's first)."""

    count: int
    connection_errors: int
    per_second: tuple[int, ...]


@dataclass(frozen=True)
class MemtierTotals:
    """The JSON report's ``ALL STATS``: run window (ms since the epoch) and per-command totals
    (keyed by the JSON's names: ``Sets``, ``Gets``, ``Hsets``...)."""

    start_ms: int
    finish_ms: int
    interrupted: bool
    commands: Mapping[str, CommandTotals]
    total_count: int

    @property
    def count(self) -> int:
        """Replies over all commands (the ``Totals`` section's count)."""
        return self.total_count


@dataclass(frozen=True)
class RunWindow:
    """The measured run's window (wall clock, ns) and whether it is memtier's own."""

    start_ns: int
    length_ns: int
    memtiers: bool


#: memtier writes its instants in whole milliseconds, rounded down.
_MS_NS: Final = 1_000_000


def run_window(totals: MemtierTotals, spawned_ns: int, ended_ns: int) -> RunWindow:
    """The window of a run that coord spawned at ``spawned_ns`` and saw exit at ``ended_ns``:
    memtier's own ``Runtime`` when it lies within that span, else the span itself.

    memtier averages its clients' start and finish instants seconds and microseconds apart,
    truncating each running average (``timeval_factorial_average``): when the clients' instants
    straddle a second boundary, the average loses part of a second. A run of a few ms then
    "finished before it started"; a longer one is up to a second off. Only what cannot be
    (before the spawn, after the exit, a finish before the start) is caught here; the span
    includes memtier's start-up and report, a few ms."""
    start, finish = totals.start_ms * _MS_NS, totals.finish_ms * _MS_NS
    if spawned_ns - _MS_NS <= start <= finish <= ended_ns:
        return RunWindow(start, max(_MS_NS, finish - start), memtiers=True)
    return RunWindow(spawned_ns, max(1, ended_ns - spawned_ns), memtiers=False)


#: memtier's progress lines end in ``\r``, so the message may follow one on the same line.
_CONNECTION_ERROR: Final = re.compile(r"Connection error: *([^\r\n]*[^\s])")


def connection_error(stderr: str) -> str | None:
    """The reason of memtier's first ``Connection error: ...`` line, None when it had none.
    memtier that cannot connect retries, gives up and still exits 0, with an empty report: its
    stderr says why."""
    match = _CONNECTION_ERROR.search(stderr)
    return match.group(1) if match else None


def read_json_totals(text: str) -> MemtierTotals:
    """The totals of memtier's ``--json-out-file`` (run 1; memtier writes ``ALL STATS`` for
    the single run coord asks for)."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise _error(f"JSON report is not JSON (truncated?): {exc}") from exc
    stats = _section(document, "ALL STATS", "the JSON report")
    runtime = _section(stats, "Runtime", "ALL STATS")
    start = _integer(runtime, "Start time", "ALL STATS.Runtime")
    finish = _integer(runtime, "Finish time", "ALL STATS.Runtime")
    interrupted = runtime.get("Interrupted", "false") == "true"
    commands: dict[str, CommandTotals] = {}
    for key, section in stats.items():
        if key in _NOT_COMMANDS or not isinstance(section, dict) or "Count" not in section:
            continue
        commands[key] = _command(section, f"ALL STATS.{key}")
    totals = _section(stats, "Totals", "ALL STATS")
    total = _integer(totals, "Count", "ALL STATS.Totals")
    counted = sum(command.count for command in commands.values())
    if counted != total:
        raise _error(f"JSON report: the commands count {counted} replies but Totals {total}")
    return MemtierTotals(start, finish, interrupted, commands, total)


def _command(section: Mapping[str, object], where: str) -> CommandTotals:
    series = section.get("Time-Serie", {})
    if not isinstance(series, dict):
        raise _error(f"JSON report: {where}.Time-Serie is not an object")
    seconds = sorted(series, key=lambda second: int(second) if second.isdigit() else -1)
    per_second = []
    for second in seconds:
        if not second.isdigit():
            raise _error(f"JSON report: {where}.Time-Serie has a key {second!r}")
        point = series[second]
        if not isinstance(point, dict):
            raise _error(f"JSON report: {where}.Time-Serie.{second} is not an object")
        per_second.append(_integer(point, "Count", f"{where}.Time-Serie.{second}"))
    return CommandTotals(
        count=_integer(section, "Count", where),
        connection_errors=_integer(section, "Connection Errors", where),
        per_second=tuple(per_second),
    )


def _section(document: object, key: str, where: str) -> Mapping[str, object]:
    if not isinstance(document, dict):
        raise _error(f"JSON report: {where} is not an object")
    section = document.get(key)
    if not isinstance(section, dict):
        raise _error(f"JSON report: {where} has no {key!r} object (truncated?)")
    return section


def _integer(section: Mapping[str, object], key: str, where: str) -> int:
    value = section.get(key)
    if type(value) is not int or value < 0:
        raise _error(f"JSON report: {where}.{key} is {value!r}, not a count")
    return value


def _finite(text: str, name: str, number: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _error(f"{name} line {number}: {text.strip()[:40]!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise _error(f"{name} line {number}: {text.strip()[:40]!r} is not a timestamp")
    return value


def _error(problem: str) -> ToolOutputError:
    return ToolOutputError(TOOL, problem)
