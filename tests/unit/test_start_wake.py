"""How a load process meets T0: a short scheduler slice for the wake-up and the first sends
only, and no garbage collection once it has started (issue 9's start-skew target)."""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest

from agent.drivers.channel import Channel
from agent.drivers.kit import child
from agent.drivers.kit.sched_slice import (
    DEFAULT_SLICE,
    SHORT_SLICE_NS,
    current_slice_ns,
    request_slice,
)
from agent.drivers.kit.timed import COMPLETED, IntervalGrid, run_timed
from agent.drivers.spec import SLEEP, SLEEP_SPIN, SPIN, Timeline


def slice_hint_supported() -> bool:
    """Whether this kernel takes the slice hint (Linux >= 6.12 on a known architecture)."""
    default = current_slice_ns()
    taken = request_slice(SHORT_SLICE_NS) and current_slice_ns() == SHORT_SLICE_NS
    request_slice(DEFAULT_SLICE)
    return default is not None and taken


needs_slice_hint = pytest.mark.skipif(
    not slice_hint_supported(), reason="this kernel does not take sched_attr.sched_runtime as "
    "a slice hint (Linux >= 6.12 does): the start runs without it")


class SliceProbe:
    """A timed load that notes the calling thread's slice at its first sends and in its loop."""

    def __init__(self) -> None:
        self.default: int | None = None
        self.at_begin: int | None = None
        self.in_loop: int | None = None

    def begin(self, grid: IntervalGrid) -> Sequence[int]:
        self.at_begin = current_slice_ns()
        return [time.time_ns()]

    def loop(self, grid: IntervalGrid) -> str:
        self.in_loop = current_slice_ns()
        return COMPLETED

    def report_interval(self, index: int, *, complete: bool) -> None:
        """Nothing to report."""


@pytest.fixture
def channels() -> Iterator[tuple[Channel, Channel]]:
    agent_end, load_end = socket.socketpair()
    with agent_end, load_end:
        yield Channel(agent_end), Channel(load_end)


def run_probe(load_channel: Channel, how: str) -> SliceProbe:
    """``run_timed`` in a thread of its own (the slice is per thread, and inherited: the
    thread starts from the default), T0 30 ms ahead."""
    probe = SliceProbe()
    timeline = Timeline(interval_ns=10**9, warmup_intervals=0, measure_intervals=1,
                        start_wait=how)

    def run() -> None:
        request_slice(DEFAULT_SLICE)
        probe.default = current_slice_ns()
        run_timed(load_channel, timeline, time.time_ns() + 30_000_000, probe)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return probe


@needs_slice_hint
@pytest.mark.parametrize("how", [SLEEP_SPIN, SLEEP])
def test_a_sleeping_load_process_wakes_with_a_short_slice_and_loads_with_the_default(
        channels: tuple[Channel, Channel], how: str) -> None:
    _, load_channel = channels
    probe = run_probe(load_channel, how)
    assert probe.at_begin == SHORT_SLICE_NS
    assert probe.in_loop == probe.default != SHORT_SLICE_NS


@needs_slice_hint
def test_a_spinning_load_process_keeps_the_default_slice(
        channels: tuple[Channel, Channel]) -> None:
    _, load_channel = channels
    probe = run_probe(load_channel, SPIN)
    assert probe.at_begin == probe.in_loop == probe.default != SHORT_SLICE_NS


class GcProbe:
    """A child ``Load`` that notes the collector's state when it is told to run."""

    seen: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: dict[str, Any], channel: Channel) -> None:
        self.channel = channel

    def prepare(self) -> int:
        GcProbe.seen["enabled_at_prepare"] = gc.isenabled()
        return 0

    def run_at(self, t0_ns: int) -> None:
        GcProbe.seen["enabled_at_start"] = gc.isenabled()
        GcProbe.seen["frozen_at_start"] = gc.get_freeze_count()

    def close(self) -> None:
        """Nothing to release."""


def test_a_load_process_freezes_its_set_up_and_runs_without_the_collector(
        channels: tuple[Channel, Channel]) -> None:
    agent_channel, load_channel = channels
    agent_channel.send({"type": "configure", "config": {}})
    agent_channel.send({"type": "start", "t0_ns": time.time_ns()})
    was_enabled = gc.isenabled()
    try:
        assert child.serve(load_channel, GcProbe) == 0
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()
    assert GcProbe.seen["enabled_at_prepare"]
    assert GcProbe.seen["enabled_at_start"] is False  # no collection pause in the load
    assert GcProbe.seen["frozen_at_start"] > 0  # the set-up's objects are out of collections


@needs_slice_hint
def test_the_slice_hint_keeps_the_thread_policy() -> None:
    seen: dict[str, object] = {}

    def run() -> None:  # a thread of its own: the policy is per thread
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        seen["taken"] = request_slice(SHORT_SLICE_NS)
        seen["batch"] = os.sched_getscheduler(0) == os.SCHED_BATCH
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        seen["idle_left_alone"] = not request_slice(SHORT_SLICE_NS)
        seen["idle"] = os.sched_getscheduler(0) == os.SCHED_IDLE

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == {"taken": True, "batch": True, "idle_left_alone": True, "idle": True}
