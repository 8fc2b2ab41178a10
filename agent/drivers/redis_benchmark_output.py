"""Readers of redis-benchmark's output (Redis 7): the full report per test, its ``--csv``
lines and its error lines. Pure; every failure is a :class:`ToolOutputError` naming the tool.

Per test, redis-benchmark prints (progress lines end in ``\\r`` and are skipped)::

    ====== SET ======
      20000 requests completed in 0.25 seconds
      10 parallel clients
      ...
    Latency by percentile distribution:
    0.000% <= 0.015 milliseconds (cumulative count 755)
    50.000% <= 0.047 milliseconds (cumulative count 10393)
    ...
    100.000% <= 5.303 milliseconds (cumulative count 20000)

    Cumulative distribution of latencies:
    ...
    Summary:
      throughput summary: 79681.28 requests per second

The distribution is HdrHistogram_c's percentile iteration (one tick per half distance) of the
tool's histogram: range 10..3000000 µs with ``--precision`` significant figures (default 3),
so its buckets are 8 µs wide below 16.384 ms, then relatively 1/1024 (1/8192 at precision 4);
each line prints a bucket's highest value in ms with 3 decimals (1 µs). A line is printed only
when the cumulative count moved, so the lines are every distinct bucket the percentiles
stepped on: :meth:`BenchmarkTest.histogram` rebuilds a histogram holding, at each printed
value, the requests between it and the previous one. Its percentiles are the printed ones, at
the printed values (tests/unit/test_tool_output.py proves it by printing, parsing, rebuilding
and printing again); what lies between two printed values is not known, and is not invented.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from hdrh.histogram import HdrHistogram

from agent.drivers.tool_output import ToolOutputError
from agent.histograms import HistogramParams, record_counts

TOOL: Final = "redis-benchmark"
#: The tool's histogram range (µs), from redis-benchmark.c.
LOWEST_USEC: Final = 10
HIGHEST_USEC: Final = 3_000_000

_TITLE: Final = re.compile(r"^====== (.+) ======$")
_COMPLETED: Final = re.compile(r"^(\d+) requests completed in ([0-9.]+) seconds$")
_CLIENTS: Final = re.compile(r"^(\d+) parallel clients$")
_PAYLOAD: Final = re.compile(r"^(\d+) bytes payload$")
_THREADS: Final = re.compile(r"^threads: (\d+)$")
_DISTRIBUTION: Final = "Latency by percentile distribution:"
_LINE: Final = re.compile(r"^([0-9.]+)% <= ([0-9.]+) milliseconds \(cumulative count (\d+)\)$")
_THROUGHPUT: Final = re.compile(r"^throughput summary: ([0-9.]+) requests per second$")
_CSV_HEADER: Final = (
    "test", "rps", "avg_latency_ms", "min_latency_ms", "p50_latency_ms", "p95_latency_ms",
    "p99_latency_ms", "max_latency_ms",
)  # fmt: skip


@dataclass(frozen=True)
class PercentileLine:
    """``percentile% <= value (cumulative count N)``, the value in µs."""

    percentile: float
    value_usec: int
    cumulative_count: int


@dataclass(frozen=True)
class BenchmarkTest:
    """One test's report (``SET``, ``GET``, or the command line given)."""

    name: str
    requests: int
    seconds: float
    clients: int
    payload_bytes: int
    threads: int | None
    distribution: tuple[PercentileLine, ...]
    throughput_rps: float

    @property
    def recorded(self) -> int:
        """Requests in the tool's histogram (those beyond 3 s it could not record)."""
        return self.distribution[-1].cumulative_count

    def histogram(self, params: HistogramParams) -> tuple[HdrHistogram, int]:
        """The distribution rebuilt in a histogram with ``params``, and the requests that are
        overflow: beyond ``params``' range, or beyond the tool's own (``requests`` -
        ``recorded``)."""
        counts: dict[int, int] = {}
        previous = 0
        for line in self.distribution:
            step = line.cumulative_count - previous
            if step:
                counts[line.value_usec] = counts.get(line.value_usec, 0) + step
            previous = line.cumulative_count
        histogram = params.empty()
        overflow = record_counts(histogram, counts)
        return histogram, overflow + self.requests - self.recorded


@dataclass
class _Draft:
    name: str
    requests: int | None = None
    seconds: float | None = None
    clients: int | None = None
    payload_bytes: int | None = None
    threads: int | None = None
    in_distribution: bool = False
    distribution: list[PercentileLine] = field(default_factory=list)
    throughput_rps: float | None = None

    def finish(self) -> BenchmarkTest:
        where = f"test {self.name!r}"
        if self.requests is None or self.seconds is None:
            raise _error(f"{where} has no 'requests completed' line (truncated?)")
        if not self.distribution:
            raise _error(f"{where} has no latency by percentile distribution (truncated?)")
        last = self.distribution[-1]
        if last.percentile != 100.0:
            raise _error(f"{where}: the distribution does not reach 100% (truncated?)")
        if last.cumulative_count > self.requests:
            raise _error(
                f"{where}: the distribution counts {last.cumulative_count} requests, "
                f"more than the {self.requests} completed"
            )
        if self.throughput_rps is None:
            raise _error(f"{where} has no throughput summary (truncated?)")
        return BenchmarkTest(
            name=self.name,
            requests=self.requests,
            seconds=self.seconds,
            clients=self.clients or 0,
            payload_bytes=self.payload_bytes or 0,
            threads=self.threads,
            distribution=tuple(self.distribution),
            throughput_rps=self.throughput_rps,
        )


def read_report(stdout: str) -> tuple[BenchmarkTest, ...]:
    """Every test of redis-benchmark's full (not ``-q``, not ``--csv``) standard output."""
    drafts: list[_Draft] = []
    for number, line in _lines(stdout):
        title = _TITLE.match(line)
        if title:
            drafts.append(_Draft(title.group(1)))
            continue
        if not drafts:
            continue
        draft = drafts[-1]
        if line == _DISTRIBUTION:
            draft.in_distribution = True
        elif draft.in_distribution:
            if not line:
                draft.in_distribution = False
            else:
                draft.distribution.append(_percentile_line(line, number, draft))
        else:
            _header_line(line, draft)
    if not drafts:
        raise _error("no test report in the output (no '====== NAME ======' line)")
    return tuple(draft.finish() for draft in drafts)


def _lines(text: str) -> list[tuple[int, str]]:
    """Numbered lines without the progress updates (text ending in carriage returns)."""
    lines = []
    for number, raw in enumerate(text.split("\n"), start=1):
        lines.append((number, raw.rsplit("\r", 1)[-1].strip()))
    return lines


def _percentile_line(line: str, number: int, draft: _Draft) -> PercentileLine:
    match = _LINE.match(line)
    if not match:
        raise _error(f"line {number}: {line[:60]!r} is not a percentile line of {draft.name!r}")
    parsed = PercentileLine(
        percentile=float(match.group(1)),
        value_usec=round(float(match.group(2)) * 1000),
        cumulative_count=int(match.group(3)),
    )
    if parsed.percentile > 100.0:
        raise _error(f"line {number}: percentile {parsed.percentile} is above 100")
    if draft.distribution:
        before = draft.distribution[-1]
        if (
            parsed.percentile < before.percentile
            or parsed.value_usec < before.value_usec
            or parsed.cumulative_count < before.cumulative_count
        ):
            raise _error(f"line {number}: the distribution of {draft.name!r} goes backwards")
    return parsed


def _header_line(line: str, draft: _Draft) -> None:
    if match := _COMPLETED.match(line):
        draft.requests, draft.seconds = int(match.group(1)), float(match.group(2))
    elif match := _CLIENTS.match(line):
        draft.clients = int(match.group(1))
    elif match := _PAYLOAD.match(line):
        draft.payload_bytes = int(match.group(1))
    elif match := _THREADS.match(line):
        draft.threads = int(match.group(1))
    elif match := _THROUGHPUT.match(line):
        draft.throughput_rps = float(match.group(1))


@dataclass(frozen=True)
class CsvRow:
    """One test of ``--csv`` output; latencies in ms as printed (``--precision`` decimals)."""

    test: str
    rps: float
    avg_ms: float
    min_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


def read_csv(stdout: str) -> tuple[CsvRow, ...]:
    """The rows of ``--csv`` output (a summary only: no distribution, no count)."""
    rows = list(csv.reader(io.StringIO(stdout.strip())))
    if not rows or tuple(rows[0]) != _CSV_HEADER:
        raise _error("--csv output does not start with its header line")
    parsed = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(_CSV_HEADER):
            raise _error(f"--csv line {number} has {len(row)} fields, not {len(_CSV_HEADER)}")
        try:
            figures = [float(cell) for cell in row[1:]]
        except ValueError:
            raise _error(f"--csv line {number} has a field that is not a number") from None
        parsed.append(CsvRow(row[0], *figures))
    if not parsed:
        raise _error("--csv output has no test line (truncated?)")
    return tuple(parsed)


@dataclass(frozen=True)
class ToolErrors:
    """What redis-benchmark said on stderr: error replies by prefix (``WRONGTYPE``,
    ``NOAUTH``...), connection failures, and the first line worth showing a user."""

    replies: dict[str, int]
    connection_failures: int
    first: str | None

    @property
    def any(self) -> bool:
        return bool(self.replies or self.connection_failures)


def read_errors(stderr: str) -> ToolErrors:
    """The error lines of redis-benchmark's stderr (``Error from server: ...``, a node's
    ``replied with error:`` followed by the reply, ``Could not connect to Redis at ...``)."""
    replies: dict[str, int] = {}
    connection_failures = 0
    first: str | None = None
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        reply = None
        if line.startswith("Error from server:"):
            reply = line.removeprefix("Error from server:").strip()
        elif line.endswith("replied with error:") and index + 1 < len(lines):
            reply = lines[index + 1]
        elif line.startswith("Could not connect to Redis at"):
            connection_failures += 1
            first = first or line
            continue
        if reply is not None:
            kind = reply.split(" ", 1)[0] or "ERR"
            replies[kind] = replies.get(kind, 0) + 1
            if first is None:
                first = line if line.startswith("Error from server:") else f"{line} {reply}"
    return ToolErrors(replies, connection_failures, first)


def requests_total(tests: Sequence[BenchmarkTest]) -> int:
    """Requests completed over all tests."""
    return sum(test.requests for test in tests)


def _error(problem: str) -> ToolOutputError:
    return ToolOutputError(TOOL, problem)
