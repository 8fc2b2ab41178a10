"""A second load driver built only from the driver kit, for tests/unit/test_driver_kit.py.

Its load processes open no connection: each records one ``TICK`` of 1 µs per interval (and
counts :data:`TICK_SPIN_NS` of busy-polling), on the T0 grid, until the planned end or a stop.
Everything else (processes, PDEATHSIG, readiness, T0, intervals, stop, the merged report, the
busy-poll counter, close) is the kit's.
"""

from __future__ import annotations

import select
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from agent.drivers.channel import Channel
from agent.drivers.kit import spin_counter
from agent.drivers.kit.child import child_main
from agent.drivers.kit.process_driver import ProcessDriver, ProcessPlan
from agent.drivers.kit.recorder import LoadRecorder
from agent.drivers.kit.spin_counter import PUBLISH_NS
from agent.drivers.kit.timed import COMPLETED, STOPPED, IntervalGrid, run_timed, stop_requested
from agent.drivers.spec import LoadSpec, Timeline
from agent.histograms import HistogramParams

MODULE = "tests.unit.kit_sample_load"
TICK_SPIN_NS = PUBLISH_NS
"""Each tick also counts this much busy-polling on the process's spin counter (enough to be
written to the shared count at once)."""


class TickDriver(ProcessDriver):
    name = "tick"
    version = "tick 1"
    process_module = MODULE

    def plan_load(self, spec: LoadSpec) -> Sequence[ProcessPlan]:
        config = {"timeline": spec.timeline.to_json(), "histogram": spec.histogram.to_json()}
        return [ProcessPlan(0, config) for _ in range(int(spec.params["processes"]))]


class TickLoad:
    """One load process: a tick per interval."""

    def __init__(self, config: dict[str, Any], channel: Channel) -> None:
        self.channel = channel
        self.timeline = Timeline.from_json(config["timeline"])
        histogram = HistogramParams.from_json(config["histogram"])
        self.recorder = LoadRecorder(histogram, ["TICK"], self.timeline)

    def prepare(self) -> int:
        return 0

    def run_at(self, t0_ns: int) -> None:
        run_timed(self.channel, self.timeline, t0_ns, self)

    def close(self) -> None:
        return None

    def begin(self, grid: IntervalGrid) -> list[int]:
        return [time.time_ns()]  # no connection: its start is its first "request"

    def loop(self, grid: IntervalGrid) -> str:
        while True:
            timeout = max(0.0, (grid.boundary - time.perf_counter_ns()) / 1e9)
            readable, _, _ = select.select([self.channel.sock], [], [], timeout)
            if readable and stop_requested(self.channel):
                return STOPPED
            bucket = self.recorder.bucket("TICK")
            for index, complete in grid.roll(time.perf_counter_ns()):
                bucket[1] = bucket.get(1, 0) + 1
                self.recorder.requests += 1
                if (counter := spin_counter.attached()) is not None:
                    counter.add(TICK_SPIN_NS)
                self.report_interval(index, complete=complete)
            if grid.over:
                return COMPLETED

    def report_interval(self, index: int, *, complete: bool) -> None:
        data = self.recorder.roll(index, complete=complete)
        self.channel.send({"type": "interval_counts", "interval": data.to_json()})


def main(argv: Sequence[str]) -> NoReturn:
    child_main(argv, TickLoad)
