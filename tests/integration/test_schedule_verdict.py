"""An open loop that a client cannot keep is client-bound, with its schedule as the evidence
(issue 13): one load process asked for a rate far beyond it, over enough connections (1,000)
that it always has replies to read. Its requests go out late because the process is busy: its
own lateness, not requests queued behind unanswered ones (which wait for the server and are not
client evidence: docs/methodology.md). With 200 connections and other lab tests running at
the same time, the server, short of CPU too, sometimes answered none of them for a while: the
process waited for replies then, and its lateness was the server's.

No CPU quota on the client: a quota'd client is descheduled with its replies unread, and the
time it was throttled reads as waiting for them; its throttling flags it then, not its
schedule (with half a core, 4 or 50 connections, the schedule was the evidence in 0 to 3 of
3 intervals from run to run).

Needs root. One lab (``obs13`` on 198.18.236.0/24: one client and a server with real Redis),
always torn down.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from coordinator.core import marks
from coordinator.inventory.loader import load_inventory
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.run.runner import run_benchmark
from tests.helpers import MeasureView, emptied_lab_redis, module_lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

RATE = 1_000_000  # requests/s: far beyond one load process (~100,000/s on a core)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    spec = LabSpec(name="obs13", clients=1, subnet="198.18.236.0/24")
    yield from module_lab(spec, tmp_path_factory.mktemp("obs13"))


@pytest.fixture
def server(lab: LabStatus) -> Iterator[redis.Redis]:
    yield from emptied_lab_redis(lab)


def test_a_client_that_cannot_keep_its_open_loop_rate_is_client_bound_citing_its_schedule(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    loaded = load_inventory(lab.inventory_path, [
        "benchmark.repetitions=1", "benchmark.warmup=500ms", "benchmark.duration=1500ms",
        "benchmark.interval=500ms", "baseline.enabled=false", "benchmark.builtin.processes=1",
        "benchmark.builtin.connections=1000", "benchmark.builtin.preload=false",
        "benchmark.builtin.keyspace=10000",  # a small request pool: quickly built
        f"benchmark.builtin.rate={RATE}",
    ])
    outcome = run_benchmark(loaded, tmp_path / "out", MeasureView())
    (repetition,) = outcome.document.repetitions
    (bound,) = [v for v in repetition.verdicts if v.name == marks.CLIENT_BOUND.name]
    print("client-bound:", bound.state, bound.summary)
    intervals = [(i.index, i.phase, i.complete, i.behind_schedule, i.loop_behind)
                 for agent in repetition.agents for i in agent.intervals]
    assert bound.state == "flagged", (f"{bound.summary}; window {repetition.window}; "
                                      f"intervals (index, phase, complete, behind, loop "
                                      f"behind): {intervals}")
    (schedule,) = [e for e in bound.evidence if e.metric == "behind_schedule"]
    (agent,) = repetition.agents
    behind = [i.index for i in agent.intervals if i.in_window and i.loop_behind]
    assert schedule.host == agent.host and schedule.intervals == behind and behind
    # a busy process: its late requests were its own, none counted as waiting for the server
    assert all(i.late_waiting == i.not_sent_waiting == 0 for i in agent.intervals
               if i.index in behind), [(i.index, i.late, i.late_waiting, i.not_sent,
                                        i.not_sent_waiting) for i in agent.intervals]
    assert "open-loop schedule behind in" in bound.summary
