"""The load process of the redis-benchmark driver: runs the tool, reads it, reports one interval.

Its life (:mod:`agent.drivers.kit.child` speaks to the agent):

- ``prepare``: the target is reachable (redis-benchmark spins without end on a refused
  connection, so coord checks first), then, when ``requests`` is null, calibration runs (each
  bounded) give the tool's rate on this host against this target;
- ``run_at(t0)``: at T0 the warm-up run (if any, unmeasured), then the measured run, each
  bounded by the timeline's end plus a grace; a stop kills the tool. The tool has no "wait"
  mode, so it is *spawned* at T0 (after the warm-up: at its end) and its first request is
  approximated as the spawn instant plus its measured launch delay: the run's wall time minus
  the time the tool itself reports (an upper bound: it also holds the tool's exit); that time
  (:func:`~agent.drivers.redis_benchmark_plan.run_seconds`) is the report's ``window_ns``;
- the measured run's report becomes one measure interval
  (:func:`agent.drivers.redis_benchmark_plan.run_interval`), sent with ``started`` and
  ``finished``. A tool that fails (non-zero exit, unreadable output, killed at the deadline)
  is one ``error`` line naming the tool.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from agent.drivers.channel import Channel
from agent.drivers.errors import KIND_TOOL, KIND_UNREACHABLE, DriverError
from agent.drivers.kit.child import child_main
from agent.drivers.kit.timed import COMPLETED, STOPPED, finish, stop_requested, wait_until
from agent.drivers.redis_benchmark_command import BINARY, command_line
from agent.drivers.redis_benchmark_output import read_errors, read_report
from agent.drivers.redis_benchmark_plan import (
    CALIBRATION_REQUESTS,
    CALIBRATION_RUNS,
    DriverParams,
    next_calibration,
    parse_driver_params,
    rate_of,
    requests_for,
    run_failure,
    run_interval,
    run_seconds,
)
from agent.drivers.spec import Target, Timeline, parse_target
from agent.drivers.tool_command import redacted
from agent.drivers.tool_output import ToolOutputError
from agent.drivers.tool_process import ToolRun, run_tool
from agent.histograms import HistogramParams

MODULE: Final = "agent.drivers.redis_benchmark_load"
#: Bound on one calibration run, and on the target's TCP check.
CALIBRATION_BOUND_S: Final = 60.0
CONNECT_TIMEOUT_S: Final = 5.0
#: The measured run may end this long after the timeline's planned end before it is killed
#: (less than the coordinator's own grace, so the kill is reported, not a stuck agent).
END_GRACE_S: Final = 10.0

log = logging.getLogger("agent.drivers.redis_benchmark_load")


@dataclass(frozen=True)
class LoadConfig:
    """The ``configure`` message's config."""

    binary: str
    target: Target
    params: DriverParams
    timeline: Timeline
    histogram: HistogramParams

    @classmethod
    def from_json(cls, config: dict[str, Any]) -> LoadConfig:
        return cls(
            binary=str(config["binary"]),
            target=parse_target(config["target"]),
            params=parse_driver_params(config["params"]),
            timeline=Timeline.from_json(config["timeline"]),
            histogram=HistogramParams.from_json(config["histogram"]),
        )


class ToolLoad:
    """One host's redis-benchmark load (:class:`agent.drivers.kit.child.Load`)."""

    def __init__(self, config: LoadConfig, channel: Channel) -> None:
        self.config = config
        self.channel = channel
        self.requests = config.params.tool.requests
        self.rate: float | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any], channel: Channel) -> ToolLoad:
        return cls(LoadConfig.from_json(config), channel)

    def prepare(self) -> int:
        self._check_target()
        if not self.config.params.sized:
            self.requests = self._calibrate()
            self.channel.send({"type": "sized", "requests": self.requests, "rate": self.rate})
        return self.config.params.tool.clients

    def run_at(self, t0_ns: int) -> None:
        try:
            self._run_at(t0_ns)
        except DriverError as exc:  # after ready: the agent hears it as a failed load
            self.channel.send({"type": "error", "kind": exc.kind, "message": exc.message})

    def _run_at(self, t0_ns: int) -> None:
        timeline = self.config.timeline
        if not wait_until(self.channel, t0_ns):
            finish(self.channel, STOPPED)
            return
        deadline_ns = t0_ns + timeline.total_ns + int(END_GRACE_S * 1e9)
        warmup = self._warmup_requests()
        if warmup:
            run = self._run(warmup, deadline_ns, "warm-up")
            if run is None:
                return
        run = self._run(self.requests, deadline_ns, "measured")
        if run is None:
            return
        tests = read_report(run.stdout)
        window_ns = min(run.ended_ns - run.spawned_ns, round(run_seconds(tests) * 1e9))
        launch_ns = run.ended_ns - run.spawned_ns - window_ns
        self.channel.send({"type": "started", "first_send_ns": run.spawned_ns + launch_ns,
                           "window_ns": max(1, window_ns)})
        interval = run_interval(timeline.warmup_intervals, tests, read_errors(run.stderr),
                                self.config.histogram, complete=True)
        self.channel.send({"type": "interval", "interval": interval.to_json()})
        log.info("%s: %d requests in %.3f s (wall %.3f s, launch delay %.1f ms)", BINARY,
                 sum(test.requests for test in tests), window_ns / 1e9, run.wall_s,
                 launch_ns / 1e6)
        finish(self.channel, COMPLETED)

    def close(self) -> None:
        """Nothing held between runs: each tool run is waited for (or killed) by run_tool."""

    # --- internals ----------------------------------------------------------------------

    def _argv(self, requests: int) -> list[str]:
        argv = command_line(self.config.params.with_requests(requests), self.config.target)
        return [self.config.binary, *argv[1:]]

    def _check_target(self) -> None:
        target = self.config.target
        try:
            with socket.create_connection((target.address, target.port), CONNECT_TIMEOUT_S):
                pass
        except OSError as exc:
            raise DriverError(
                KIND_UNREACHABLE, f"cannot connect to {target.endpoint}: {exc}"
            ) from None

    def _calibrate(self) -> int:
        """Requests that last the measure phase, from runs of the tool itself."""
        requests: int | None = CALIBRATION_REQUESTS
        rate = 0.0
        for _ in range(CALIBRATION_RUNS):
            if requests is None:
                break
            run = run_tool(self._argv(requests),
                           time.time_ns() + int(CALIBRATION_BOUND_S * 1e9))
            tests = self._read(run, "calibration")
            rate = rate_of(tests)
            requests = next_calibration(requests, sum(test.seconds for test in tests))
        self.rate = rate
        measure_s = self.config.timeline.measure_intervals * self.config.timeline.interval_ns / 1e9
        sized = requests_for(rate, measure_s, self.config.params.tool.pipeline)
        log.info("%s calibrated at %.0f requests/s: -n %d for %.3f s", BINARY, rate, sized,
                 measure_s)
        return sized

    def _warmup_requests(self) -> int:
        params, timeline = self.config.params, self.config.timeline
        if params.warmup_s <= 0:
            return 0
        if self.rate is not None:
            return requests_for(self.rate, params.warmup_s, params.tool.pipeline)
        measure_s = timeline.measure_intervals * timeline.interval_ns / 1e9
        return requests_for(self.requests / measure_s, params.warmup_s,
                            params.tool.pipeline)

    def _run(self, requests: int, deadline_ns: int, which: str) -> ToolRun | None:
        """One run during the load; None (``finished stopped`` sent) if the agent stopped it."""
        argv = self._argv(requests)
        log.info("%s run: %s", which, " ".join(redacted(argv)))
        run = run_tool(argv, deadline_ns, self._stop_said)
        if run.why_killed == "stop":
            finish(self.channel, STOPPED)
            return None
        self._read(run, which)
        return run

    def _stop_said(self) -> bool:
        """Whether the agent said stop (or went away), without blocking."""
        readable, _, _ = select.select([self.channel.sock], [], [], 0)
        return bool(readable) and stop_requested(self.channel)

    def _read(self, run: ToolRun, which: str) -> Sequence[Any]:
        """The run's tests; DriverError naming the tool if it failed or said nothing usable."""
        if run.why_killed == "deadline":
            raise DriverError(KIND_TOOL, f"{BINARY}: the {which} run did not end in time "
                              f"(killed after {run.wall_s:.1f} s)")
        if run.status != 0:
            raise run_failure(which, run.status or 0, read_errors(run.stderr),
                              _last_line(run.stderr))
        try:
            return read_report(run.stdout)
        except ToolOutputError as exc:
            raise DriverError(KIND_TOOL, f"{which} run: {exc}") from None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def main(argv: Sequence[str]) -> NoReturn:
    """The load process's entry (:data:`agent.drivers.kit.child.BOOT`)."""
    child_main(argv, ToolLoad.from_config)
