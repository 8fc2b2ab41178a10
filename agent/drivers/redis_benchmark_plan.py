"""The redis-benchmark driver's decisions, pure: its ``params``, how many requests a run gets,
and the one interval a run's report becomes.

``params`` of a ``"driver": "redis-benchmark"`` spec are the tool's
(:mod:`agent.drivers.redis_benchmark_command`) with two differences::

    "requests": N | null,   -n of the measured run; null: sized from a calibration run so the
                            run lasts about the measure phase (rate x duration)
    "warmup_s": W           seconds of a separate, unmeasured run before it (0: none), sized
                            likewise (or requests x W / duration when requests is given)

redis-benchmark gives no per-interval data: the measured run is the report's only interval,
the one measure interval of the timeline the coordinator sends for such a driver (its length
is the measure phase). Nothing is invented between its start and its end.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from agent.drivers.errors import (
    KIND_AUTH,
    KIND_CONFIG,
    KIND_SERVER,
    KIND_TOOL,
    KIND_UNREACHABLE,
    DriverError,
)
from agent.drivers.intervals import IntervalData
from agent.drivers.redis_benchmark_command import BINARY, RedisBenchmarkParams, parse_params
from agent.drivers.redis_benchmark_output import BenchmarkTest, ToolErrors
from agent.histograms import CommandLatencies, HistogramParams, encode

#: The calibration run's first size, and the shortest run whose rate coord trusts.
CALIBRATION_REQUESTS: Final = 10_000
CALIBRATION_MIN_S: Final = 0.5
#: At most this many calibration runs (each one sized from the previous).
CALIBRATION_RUNS: Final = 3
#: Error replies that mean the target refused our credentials (or wants some).
AUTH_REPLIES: Final = frozenset({"NOAUTH", "WRONGPASS", "NOPERM"})


@dataclass(frozen=True)
class DriverParams:
    """The tool's parameters (``requests`` meaningless while ``sized`` is False) and the
    driver's own."""

    tool: RedisBenchmarkParams
    sized: bool  # requests given explicitly (True) or to be sized by calibration
    warmup_s: float

    def with_requests(self, requests: int) -> RedisBenchmarkParams:
        return dataclasses.replace(self.tool, requests=max(1, requests))


def parse_driver_params(data: Mapping[str, Any]) -> DriverParams:
    """``params`` read strictly; DriverError("config") naming the field otherwise."""
    fields = dict(data)
    warmup = fields.pop("warmup_s", None)
    if type(warmup) not in (int, float) or not math.isfinite(warmup) or warmup < 0:
        raise DriverError(
            KIND_CONFIG, f"spec.params.warmup_s must be a number >= 0, got {warmup!r}"
        )
    sized = fields.get("requests") is not None
    if not sized:
        fields["requests"] = 1
    return DriverParams(tool=parse_params(fields), sized=sized, warmup_s=float(warmup))


def requests_for(rate_per_s: float, seconds: float, pipeline: int = 1) -> int:
    """Requests that last ``seconds`` at ``rate_per_s``: a whole number of ``pipeline``s (at
    least one), because redis-benchmark completes ``-n`` rounded up to a multiple of ``-P``
    (measured: ``-n 47059 -P 2`` makes 47060 calls), and ``-n`` must be what the tool does."""
    return pipeline * max(1, round(rate_per_s * seconds / pipeline))


def next_calibration(requests: int, seconds: float) -> int | None:
    """The next calibration run's size, None once a run of ``requests`` that lasted
    ``seconds`` is long enough to trust its rate."""
    if seconds >= CALIBRATION_MIN_S:
        return None
    factor = CALIBRATION_MIN_S / max(seconds, 0.01)
    return max(requests * 2, math.ceil(requests * factor * 1.2))


def rate_of(tests: Sequence[BenchmarkTest]) -> float:
    """Requests per second over a run of every test, from the tool's own counts and times."""
    seconds = sum(test.seconds for test in tests)
    requests = sum(test.requests for test in tests)
    return requests / seconds if seconds > 0 else float(requests)


def run_seconds(tests: Sequence[BenchmarkTest]) -> float:
    """How long the tool ran its tests, s, by its own clock: each test's requests over its
    throughput summary (the tool computes that rate from its elapsed milliseconds and prints
    it with two decimals, so this is the elapsed time to about 1 ms, where "completed in"
    rounds it to 10 ms), or its "completed in" when the rate is 0."""
    return sum(test.requests / test.throughput_rps if test.throughput_rps > 0 else test.seconds
               for test in tests)


def command_name(test: BenchmarkTest) -> str:
    """The command a test stands for: its title's first word, upper case (``SET``,
    ``LRANGE_100``, ``HSET`` for ``HSET myhash __rand_int__ v``)."""
    return test.name.split()[0].upper()


def run_interval(index: int, tests: Sequence[BenchmarkTest], errors: ToolErrors,
                 histogram: HistogramParams, *, complete: bool) -> IntervalData:
    """The measured run as one measure interval: each test's distribution rebuilt into a
    histogram (tests of one command added), requests the tool completed plus error replies."""
    by_command: dict[str, list[BenchmarkTest]] = {}
    for test in tests:
        by_command.setdefault(command_name(test), []).append(test)
    commands: dict[str, CommandLatencies] = {}
    overflow = 0
    for name, same in sorted(by_command.items()):
        merged = histogram.empty()
        for test in same:
            rebuilt, beyond = test.histogram(histogram)
            merged.add(rebuilt)
            overflow += beyond
        commands[name] = CommandLatencies(encode(merged), sum(test.requests for test in same))
    failures = dict(errors.replies)
    if errors.connection_failures:
        failures["connection"] = errors.connection_failures
    completed = sum(test.requests for test in tests)
    return IntervalData(
        index=index,
        phase="measure",
        complete=complete,
        commands=commands,
        requests=completed + sum(errors.replies.values()),
        errors=failures,
        overflow=overflow,
    )


def run_failure(which: str, status: int, errors: ToolErrors, last_line: str) -> DriverError:
    """The error of a run that exited with ``status`` (not 0), its kind by who failed: the
    target (``server``: an error reply stopped the tool; ``auth``: a refused or missing
    password; ``unreachable``: no connection) or the tool itself (``tool``: killed by a
    signal, a crash, an option it refused: no error from the target in its output)."""
    said = f"ended by signal {-status}" if status < 0 else f"exited with status {status}"
    message = f"{BINARY} {which} run {said}: {errors.first or last_line or 'no message'}"
    if errors.replies:
        auth = AUTH_REPLIES.intersection(errors.replies)
        return DriverError(KIND_AUTH if auth else KIND_SERVER, message)
    if errors.connection_failures:
        return DriverError(KIND_UNREACHABLE, message)
    return DriverError(KIND_TOOL, message)
