"""`coord run` with a preload that outlasts the heartbeat's answer timeout, on a real lab.

Needs root. One lab (``cpre`` on 198.18.180.0/24: two clients and a server with real Redis)
for the module, always torn down. The run is driven in-process with the agent request timeout
(which bounds each heartbeat's answer) shrunk, so a preload of a few seconds lasts longer than
it: the heartbeats must be answered while the agent is still preloading.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import redis

from agent import protocol
from agent.messages import LoadProgress, LoadState
from agent.metrics.model import MetricsInterval
from coordinator.inventory.loader import load_inventory
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.run.runner import run_benchmark
from tests.helpers import MeasureView, emptied_lab_redis, module_lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

NAME = "cpre"
SUBNET = "198.18.180.0/24"
KEYSPACE = 3_000_000
"""Keys preloaded by client1: several seconds of preloading in the lab."""
REQUEST_TIMEOUT_S = 2.0
"""Each heartbeat's answer must come within this (10 s in production)."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(LabSpec(name=NAME, clients=2, subnet=SUBNET),
                          tmp_path_factory.mktemp("preload"))


@pytest.fixture
def server(lab: LabStatus) -> Iterator[redis.Redis]:
    yield from emptied_lab_redis(lab)


class PreloadView(MeasureView):
    """Records the preload's progress as the live view is given it."""

    def __init__(self) -> None:
        super().__init__()
        self.preload: list[tuple[str, LoadProgress]] = []

    def progress(self, elapsed_s: float, total_s: float, clients: dict[str, LoadProgress],
                 hosts: Mapping[str, MetricsInterval]) -> None:
        super().progress(elapsed_s, total_s, clients, hosts)
        self.preload += [(name, p) for name, p in clients.items() if p.preload_total]




def test_a_preload_longer_than_the_heartbeat_timeout_completes_and_the_run_succeeds(
    lab: LabStatus, tmp_path: Path, server: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(protocol, "REQUEST_TIMEOUT", REQUEST_TIMEOUT_S)
    monkeypatch.setattr(protocol, "HEARTBEAT_INTERVAL", 0.2)
    loaded = load_inventory(lab.inventory_path, [
        "baseline.enabled=false",
        "benchmark.repetitions=1", "benchmark.warmup=1s", "benchmark.duration=2s",
        "benchmark.builtin.connections=4", "benchmark.builtin.processes=1",
        "benchmark.builtin.preload=true", f"benchmark.builtin.keyspace={KEYSPACE}",
    ])
    steps: dict[str, float] = {}
    view = PreloadView()
    outcome = run_benchmark(loaded, tmp_path / "results", view,
                            on_step=lambda step: steps.setdefault(step, time.monotonic()))
    document = outcome.document
    assert document.status == "complete", document.failure
    assert len(document.repetitions) == 1 and document.repetitions[0].count > 0
    assert server.dbsize() >= KEYSPACE
    names = list(steps)
    prepared_after = steps[names[names.index("prepare") + 1]] - steps["prepare"]
    print(f"\npreparing (preload of {KEYSPACE} keys) took {prepared_after:.1f} s; each "
          f"heartbeat had {REQUEST_TIMEOUT_S:g} s to be answered")
    # the preload's progress reached the view: client1's keys, growing to the total
    assert view.preload, "no preload progress was shown"
    assert {name for name, _ in view.preload} == {"client1"}
    assert all(p.state is LoadState.PREPARING and p.preload_total == KEYSPACE
               for _, p in view.preload)
    done = [p.preload_done or 0 for _, p in view.preload]
    assert done == sorted(done) and done[-1] <= KEYSPACE
    assert len(set(done)) > 1, f"the bar never moved: {done}"
    # and its time is in the results, for client1 only
    ran_with = {agent.host: agent.ran_with for agent in document.agents}
    first, second = ran_with["client1"], ran_with["client2"]
    assert first is not None and first.preload_seconds is not None
    assert 0 < first.preload_seconds < prepared_after
    assert second is not None and second.preload_seconds is None
    print(f"preload recorded: {first.preload_seconds:.2f} s; progress {done}")

