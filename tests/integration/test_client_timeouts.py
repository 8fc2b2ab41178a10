"""Client-side reply timeouts (issue 13, item 4): a server paused longer than
``benchmark.builtin.timeout`` gives ``timeout`` errors, per interval and per repetition, and no
other error kind; the timed-out connections are replaced and the load goes on.

Needs root. One lab (``tmo13`` on 198.18.235.0/24: one client and a server with real Redis),
always torn down. The pause is a real ``CLIENT PAUSE`` sent from the root namespace once the
run's progress says the client is measuring (``MeasureView``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from coordinator.inventory.loader import load_inventory
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.run.runner import run_benchmark
from tests.helpers import MeasureView, emptied_lab_redis, module_lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

CONNECTIONS = 4
PIPELINE = 2
TIMEOUT_MS = 200
PAUSE_MS = 1000  # five timeouts long: every connection's batch in flight times out


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    spec = LabSpec(name="tmo13", clients=1, subnet="198.18.235.0/24")
    yield from module_lab(spec, tmp_path_factory.mktemp("tmo13"))


@pytest.fixture
def server(lab: LabStatus) -> Iterator[redis.Redis]:
    yield from emptied_lab_redis(lab)


def test_a_pause_longer_than_the_timeout_counts_timeouts_only_and_the_load_goes_on(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    loaded = load_inventory(lab.inventory_path, [
        "benchmark.repetitions=1", "benchmark.warmup=500ms", "benchmark.duration=2500ms",
        "benchmark.interval=500ms", "baseline.enabled=false", "benchmark.builtin.processes=1",
        f"benchmark.builtin.connections={CONNECTIONS}",
        f"benchmark.builtin.pipeline={PIPELINE}", "benchmark.builtin.preload=false",
        f"benchmark.builtin.timeout={TIMEOUT_MS}ms",
    ])
    view = MeasureView(on_measure=lambda: server.client_pause(PAUSE_MS))
    outcome = run_benchmark(loaded, tmp_path / "out", view)
    (repetition,) = outcome.document.repetitions
    (agent,) = repetition.agents
    print(f"errors {repetition.errors}; per interval "
          f"{[(i.index, i.count, dict(i.errors)) for i in agent.intervals]}")
    assert set(repetition.errors) == {"timeout"}, repetition.errors
    # each connection's batch in flight, at least once (a connection replaced during the
    # pause waits in its handshake: nothing in flight, nothing more counted)
    assert repetition.errors["timeout"] >= CONNECTIONS * PIPELINE
    assert agent.errors == repetition.errors
    stalled = [i for i in agent.intervals if i.in_window and i.errors]
    assert stalled and all(set(i.errors) == {"timeout"} for i in stalled)
    assert sum(i.errors["timeout"] for i in stalled) == repetition.errors["timeout"]
    last = max(i.index for i in stalled)
    after = [i for i in agent.intervals if i.in_window and i.index > last]
    assert any(i.count > 0 for i in after), "the load did not go on after the timeouts"
