"""The end-of-phase drain and the stall series, on a real lab (issue 9, items 1 and 2).

Needs root. One lab (``drn`` on 198.18.200.0/24: one client and a server with real Redis) for
the module, always torn down. Redis's own counters are the referee: after a ``CONFIG
RESETSTAT`` right before the load, its SET and GET calls must equal coord's request count
exactly, so no request is lost at the edges. Stalls are real ``CLIENT PAUSE`` commands, sent
from the root namespace at an instant chosen from the run's own progress (T0 and the planned
end, in the coordinator's clock, which the lab's hosts share); each test checks afterwards that
its pause fell where it meant it to, and says so if the machine was too busy for that.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import redis

from agent.messages import LoadProgress
from agent.metrics.model import MetricsInterval
from coordinator.inventory.loader import load_inventory
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.results import AgentRepetition, Repetition
from coordinator.run.runner import RunOutcome, StepHook, run_benchmark
from tests.helpers import MeasureView, emptied_lab_redis, module_lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

NAME = "drn"
SUBNET = "198.18.200.0/24"
CONNECTIONS = 10
PAUSE_MS = 500
#: Before the planned end, where a pause meant to overlap it starts.
BEFORE_END_S = 0.25


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    spec = LabSpec(name=NAME, clients=1, subnet=SUBNET)
    yield from module_lab(spec, tmp_path_factory.mktemp("drain"))


@pytest.fixture
def server(lab: LabStatus) -> Iterator[redis.Redis]:
    yield from emptied_lab_redis(lab)


class EndView(MeasureView):
    """A run view that learns T0 and the planned end from the run's progress, and sends a
    ``CLIENT PAUSE`` of ``pause_ms`` starting ``before_end_s`` before the planned end."""

    def __init__(self, server: redis.Redis, pause_ms: int, before_end_s: float) -> None:
        super().__init__()
        self.server = server
        self.pause_ms = pause_ms
        self.before_end_s = before_end_s
        self.planned_end: float | None = None  # time.time() of the planned end
        self.paused_at: float | None = None
        self.failures: list[BaseException] = []
        self._timer: threading.Timer | None = None

    def progress(self, elapsed_s: float, total_s: float, clients: dict[str, LoadProgress],
                 hosts: Mapping[str, MetricsInterval]) -> None:
        super().progress(elapsed_s, total_s, clients, hosts)
        if self._timer is None and 0 < elapsed_s < total_s - self.before_end_s - 0.1:
            self.planned_end = time.time() - elapsed_s + total_s
            delay = self.planned_end - self.before_end_s - time.time()
            self._timer = threading.Timer(delay, self._pause)
            self._timer.start()

    def _pause(self) -> None:
        try:
            self.paused_at = time.time()
            self.server.client_pause(self.pause_ms)
        except BaseException as exc:  # noqa: BLE001 - reported by the test body
            self.failures.append(exc)

    def check_overlap(self) -> None:
        """The pause began before the planned end and ended after it (else the machine was
        too busy to place it: the test cannot say anything)."""
        if self._timer is not None:
            self._timer.join(10)
        assert not self.failures, self.failures
        assert self.planned_end is not None and self.paused_at is not None, "no pause was sent"
        if not self.paused_at < self.planned_end < self.paused_at + self.pause_ms / 1000:
            pytest.fail(f"the pause began {self.planned_end - self.paused_at:.3f} s before the "
                        "planned end, not overlapping it (machine too busy?)")


def run(lab: LabStatus, tmp_path: Path, view: MeasureView, *overrides: str,
        on_step: StepHook = lambda _step: None) -> RunOutcome:
    loaded = load_inventory(lab.inventory_path, [
        "benchmark.repetitions=1", "benchmark.warmup=1s", "benchmark.duration=2s",
        "baseline.enabled=false", "benchmark.builtin.processes=1",
        f"benchmark.builtin.connections={CONNECTIONS}", "benchmark.builtin.preload=false",
        *overrides,
    ])
    return run_benchmark(loaded, tmp_path / "out", view, on_step=on_step)


def only_agent(repetition: Repetition) -> AgentRepetition:
    (agent,) = repetition.agents
    return agent


def calls(server: redis.Redis) -> int:
    """SET and GET calls Redis counted since its last ``CONFIG RESETSTAT``."""
    stats = server.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("set", "get"))


# --- item 1: the end-of-phase drain -----------------------------------------------------------


@pytest.mark.parametrize("pipeline", [1, 16])
def test_redis_counts_exactly_the_requests_coord_counts(
    lab: LabStatus, tmp_path: Path, server: redis.Redis, pipeline: int
) -> None:
    def reset_right_before_the_load(step: str) -> None:
        if step == "start at T0":  # after prepare (connections open, no load yet)
            server.config_resetstat()

    outcome = run(lab, tmp_path, MeasureView(), f"benchmark.builtin.pipeline={pipeline}",
                  on_step=reset_right_before_the_load)
    assert outcome.document.status == "complete"
    agent = only_agent(outcome.document.repetitions[0])
    requested = sum(interval.requests for interval in agent.intervals)  # warm-up included
    assert all(not interval.errors for interval in agent.intervals)
    print(f"pipeline {pipeline}: coord {requested} requests, Redis {calls(server)} calls")
    assert calls(server) == requested


def test_a_pause_over_the_planned_end_shows_in_the_max(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    view = EndView(server, PAUSE_MS, BEFORE_END_S)
    outcome = run(lab, tmp_path, view, "benchmark.interval=0.5s")
    view.check_overlap()
    repetition = outcome.document.repetitions[0]
    print(f"pause over the end: repetition max {repetition.latency_usec.max} µs, "
          f"p99 {repetition.latency_usec.p99} µs")
    assert repetition.errors == {}
    assert repetition.latency_usec.max >= 400_000
    last = only_agent(repetition).intervals[-1]
    print(f"last interval: max {last.max_usec} µs, gap {last.gap_usec} µs")
    assert last.in_window and last.complete
    assert last.max_usec is not None and last.max_usec >= 400_000


def test_replies_that_never_come_count_as_timeouts(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    view = EndView(server, 3000, 0.3)  # far beyond the planned end plus a 0.5 s drain
    outcome = run(lab, tmp_path, view, "benchmark.drain_timeout=0.5s",
                  "benchmark.builtin.pipeline=4")
    view.check_overlap()
    agent = only_agent(outcome.document.repetitions[0])
    assert agent.intervals[-1].errors == {"timeout": CONNECTIONS * 4}  # every batch in flight
    assert all(not interval.errors for interval in agent.intervals[:-1])


# --- item 2: the stall series -----------------------------------------------------------------


def test_a_pause_in_the_middle_shows_in_the_interval_series(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    def pause() -> None:
        server.client_pause(PAUSE_MS)

    outcome = run(lab, tmp_path, MeasureView(on_measure=pause), "benchmark.interval=0.1s",
                  "benchmark.warmup=0.5s", "benchmark.duration=3s")
    repetition = outcome.document.repetitions[0]
    agent = only_agent(repetition)
    measured = [interval for interval in agent.intervals if interval.phase == "measure"]
    print(f"repetition: {repetition.requests} requests, p99 {repetition.latency_usec.p99} µs, "
          f"p99.9 {repetition.latency_usec.p999} µs, max {repetition.latency_usec.max} µs")
    counts = [interval.count for interval in measured]
    empty = [interval for interval in measured if interval.count == 0]
    print("counts:", counts)
    print("max µs:", [interval.max_usec for interval in measured])
    print("gap µs:", [interval.gap_usec for interval in measured])
    assert empty, "the pause emptied no interval"
    for interval in empty:
        assert (interval.p99_usec, interval.p999_usec, interval.max_usec) == (None, None, None)
        assert interval.gap_usec is not None and interval.gap_usec >= 90_000
    assert sorted(counts)[len(counts) // 2] > 0  # the load went on around the stall
    assert max(interval.max_usec or 0 for interval in measured) >= 400_000
    assert max(interval.gap_usec or 0 for interval in measured) >= 400_000
    assert agent.gap_usec is not None and agent.gap_usec >= 400_000
    for interval in measured:
        if interval.count:
            assert interval.max_usec is not None and interval.p99_usec is not None
            assert interval.p99_usec <= (interval.p999_usec or 0) <= interval.max_usec
