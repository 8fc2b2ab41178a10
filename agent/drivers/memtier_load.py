"""The load process of the memtier driver: runs memtier_benchmark, reads its files, reports one
interval.

Like :mod:`agent.drivers.redis_benchmark_load`: the target is checked in ``prepare``; at T0 a
separate, unmeasured warm-up run (``--test-time`` = the warm-up, rounded up to whole seconds)
if asked for, then the measured run, each spawned at once (memtier has no "wait" mode), dying
with this process, killed on a stop or at the timeline's end plus a grace. The first request's
instant is memtier's own: the JSON's ``Runtime.Start time`` (ms), and the run's length
(the report's ``window_ns``) its ``Finish time`` minus that. memtier's histogram files
hold **one histogram for the whole run** per command (not per interval), so the run is one
measure interval: each ``<prefix>_<COMMAND>_command_run_1.hgrm`` re-recorded into coord's
histogram, its count the JSON's count for that command (``Sets``, ``Hsets``...).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import select
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

from agent.drivers.channel import Channel
from agent.drivers.errors import KIND_TOOL, KIND_UNREACHABLE, DriverError
from agent.drivers.intervals import IntervalData
from agent.drivers.kit.child import child_main
from agent.drivers.kit.timed import COMPLETED, STOPPED, finish, stop_requested, wait_until
from agent.drivers.memtier_command import (
    BINARY,
    MemtierParams,
    command_line,
    parse_params,
)
from agent.drivers.memtier_output import (
    MemtierTotals,
    connection_error,
    read_hdr_log,
    read_json_totals,
    run_window,
)
from agent.drivers.spec import Target, Timeline, parse_target
from agent.drivers.tool_command import redacted
from agent.drivers.tool_output import ToolOutputError, rerecord
from agent.drivers.tool_process import ToolRun, run_tool
from agent.histograms import CommandLatencies, HistogramParams, encode

MODULE: Final = "agent.drivers.memtier_load"
CONNECT_TIMEOUT_S: Final = 5.0
END_GRACE_S: Final = 10.0
PREFIX: Final = "memtier"
_HGRM: Final = re.compile(rf"^{PREFIX}_(.+)_command_run_1\.hgrm$")

log = logging.getLogger("agent.drivers.memtier_load")


@dataclass(frozen=True)
class LoadConfig:
    binary: str
    target: Target
    params: MemtierParams
    warmup_s: float
    timeline: Timeline
    histogram: HistogramParams

    @classmethod
    def from_json(cls, config: dict[str, Any]) -> LoadConfig:
        params = dict(config["params"])
        warmup = float(params.pop("warmup_s"))
        return cls(
            binary=str(config["binary"]),
            target=parse_target(config["target"]),
            params=parse_params(params),
            warmup_s=warmup,
            timeline=Timeline.from_json(config["timeline"]),
            histogram=HistogramParams.from_json(config["histogram"]),
        )


def json_name(command: str) -> str:
    """The JSON's section of a command: ``HSET`` -> ``Hsets``."""
    return command.capitalize() + "s"


def run_interval(index: int, totals: MemtierTotals, histograms: dict[str, Any],
                 params: HistogramParams) -> IntervalData:
    """The measured run as one measure interval: per command, memtier's whole-run histogram
    re-recorded in coord's parameters and the JSON's count. Pure."""
    commands: dict[str, CommandLatencies] = {}
    overflow = 0
    connection_errors = 0
    for name, source in sorted(histograms.items()):
        histogram, beyond = rerecord(source, params)
        section = totals.commands.get(json_name(name))
        recorded = int(histogram.get_total_count())
        reported = section.count if section is not None else 0
        count = max(reported, recorded + beyond)  # beyond coord's range: overflow, not lost
        overflow += count - recorded
        commands[name] = CommandLatencies(encode(histogram), count)
    for section in totals.commands.values():
        connection_errors += section.connection_errors
    errors = {"connection": connection_errors} if connection_errors else {}
    return IntervalData(
        index=index,
        phase="measure",
        complete=not totals.interrupted,
        commands=commands,
        requests=sum(c.count for c in commands.values()),
        errors=errors,
        overflow=overflow,
    )


class ToolLoad:
    def __init__(self, config: LoadConfig, channel: Channel) -> None:
        self.config = config
        self.channel = channel

    @classmethod
    def from_config(cls, config: dict[str, Any], channel: Channel) -> ToolLoad:
        return cls(LoadConfig.from_json(config), channel)

    def prepare(self) -> int:
        target = self.config.target
        try:
            with socket.create_connection((target.address, target.port), CONNECT_TIMEOUT_S):
                pass
        except OSError as exc:
            raise DriverError(
                KIND_UNREACHABLE, f"cannot connect to {target.endpoint}: {exc}"
            ) from None
        return self.config.params.connections

    def run_at(self, t0_ns: int) -> None:
        try:
            self._run_at(t0_ns)
        except DriverError as exc:
            self.channel.send({"type": "error", "kind": exc.kind, "message": exc.message})

    def close(self) -> None:
        """Nothing held between runs."""

    def _run_at(self, t0_ns: int) -> None:
        config = self.config
        if not wait_until(self.channel, t0_ns):
            finish(self.channel, STOPPED)
            return
        deadline_ns = t0_ns + config.timeline.total_ns + int(END_GRACE_S * 1e9)
        if config.warmup_s > 0:
            warmup = config.params
            if warmup.test_time is not None:
                warmup = _with_time(warmup, max(1, -(-int(config.warmup_s * 1000) // 1000)))
            with tempfile.TemporaryDirectory(prefix="coord-memtier-") as directory:
                if self._run(warmup, Path(directory), deadline_ns, "warm-up") is None:
                    return
        with tempfile.TemporaryDirectory(prefix="coord-memtier-") as directory:
            run = self._run(config.params, Path(directory), deadline_ns, "measured")
            if run is None:
                return
            totals, histograms = self._read_measured(run, Path(directory))
        window = run_window(totals, run.spawned_ns, run.ended_ns)
        if not window.memtiers:
            log.warning("%s's Runtime (%d to %d ms) is not within its run (%d to %d ns): the "
                        "window is its spawn to its exit", BINARY, totals.start_ms,
                        totals.finish_ms, run.spawned_ns, run.ended_ns)
        self.channel.send({"type": "started", "first_send_ns": window.start_ns,
                           "window_ns": window.length_ns})
        interval = run_interval(config.timeline.warmup_intervals, totals, histograms,
                                config.histogram)
        self.channel.send({"type": "interval", "interval": interval.to_json()})
        finish(self.channel, COMPLETED)

    def _run(self, params: MemtierParams, directory: Path, deadline_ns: int,
             which: str) -> ToolRun | None:
        argv = command_line(params, self.config.target, str(directory / PREFIX),
                            str(directory / "run.json"))
        argv[0] = self.config.binary
        log.info("%s run: %s", which, " ".join(redacted(argv)))
        run = run_tool(argv, deadline_ns, self._stop_said)
        if run.why_killed == "stop":
            finish(self.channel, STOPPED)
            return None
        if run.why_killed == "deadline":
            raise DriverError(KIND_TOOL, f"{BINARY}: the {which} run did not end in time "
                              f"(killed after {run.wall_s:.1f} s)")
        if run.status != 0:
            said = _last_line(run.stderr) or "no message"
            raise DriverError(KIND_TOOL, f"{BINARY} {which} run exited with status "
                              f"{run.status}: {said}")
        return run

    def _read_measured(self, run: ToolRun,
                       directory: Path) -> tuple[MemtierTotals, dict[str, Any]]:
        """The measured run's output. A memtier that could not connect still exits 0, with
        nothing counted: that is this error, not its report's."""
        refused = connection_error(run.stderr)
        unreachable = DriverError(KIND_UNREACHABLE, f"{BINARY} could not connect to "
                                  f"{self.config.target.endpoint}: {refused}")
        try:
            totals, histograms = self._read(directory)
        except DriverError:
            if refused is not None:
                raise unreachable from None
            raise
        if refused is not None and totals.count == 0:
            raise unreachable
        return totals, histograms

    def _read(self, directory: Path) -> tuple[MemtierTotals, dict[str, Any]]:
        try:
            totals = read_json_totals((directory / "run.json").read_text())
            histograms = {}
            for path in sorted(directory.iterdir()):
                match = _HGRM.match(path.name)
                if match:
                    entries = read_hdr_log(path.read_text(), path.name)
                    if entries:
                        histograms[match.group(1)] = entries[-1].histogram
        except (OSError, ToolOutputError) as exc:
            raise DriverError(KIND_TOOL, f"measured run: {exc}") from None
        return totals, histograms

    def _stop_said(self) -> bool:
        readable, _, _ = select.select([self.channel.sock], [], [], 0)
        return bool(readable) and stop_requested(self.channel)


def _with_time(params: MemtierParams, seconds: int) -> MemtierParams:
    return dataclasses.replace(params, test_time=seconds)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def main(argv: Sequence[str]) -> NoReturn:
    child_main(argv, ToolLoad.from_config)

