"""`coord sweep --plan` with an open-loop rate ramp on a real lab: it climbs from a rate the
client keeps easily until a cell's clients fall behind, or its p99 crosses the bound, records
that cell's stop reason, skips the rates above, and reports the highest clean rate below the
stop as the sustainable rate.

Needs root. Lab ``rmp15`` (198.18.237.0/24): one client, and the server (its redis-server)
under a 0.25-core CPU quota, so that the knee is a step or two up whatever the machine's load:
200 requests/s is about 1 % of what a quarter of a core of Redis serves (about 32,000/s
here), 30,200/s is at the edge of it and 60,200/s beyond it. The quota is on the server, not
the client: a quota'd client is throttled for most of each CFS period even at 1,000/s, and its
own stalls (p99 near 60 ms) stop the ramp at its first rate. The first rate is low because
the open loop spins between send times closer than about 2 ms (docs/drivers.md): at 1,000/s
the load process holds a core, and the client-bound verdict keeps the cell out of the
report's ranking; at 200/s it sleeps most of the time. One
repetition of 1 s warm-up + 1 s measured per cell, no baseline; always torn down.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.lab.api import LabSpec, LabStatus
from coordinator.results import load_results
from coordinator.sweep.analysis import summarise
from coordinator.sweep.index import CellRecord
from coordinator.sweep.store import cell_directory, read_index
from tests.helpers import module_lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
SPEC = LabSpec(name="rmp15", clients=1, subnet="198.18.237.0/24", server_cpu=0.25)
RATES = [200.0, 30200.0, 60200.0]
P99_BOUND_USEC = 50_000.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(SPEC, tmp_path_factory.mktemp("ramp-lab"))


def write_plan(path: Path, lab: LabStatus) -> Path:
    path.write_text(f"""\
version: 1
name: lab-ramp
inventories:
  - name: quota
    file: {lab.inventory_path}
set:
  benchmark.repetitions: 1
  benchmark.warmup: 1s
  benchmark.duration: 1s
  benchmark.builtin.processes: 1
  benchmark.builtin.connections: 4
  benchmark.builtin.preload: false
  baseline.enabled: false
ramp: {{start: {RATES[0]:.0f}, step: {RATES[1] - RATES[0]:.0f}, max: {RATES[2]:.0f},
        p99_bound: {P99_BOUND_USEC / 1000:.0f}ms}}
""")
    return path


def jittered(out: Path, cell: CellRecord) -> bool:
    """Whether ``cell`` fell behind only by sends over 1 ms late, having sent its whole rate
    (nothing left unsent). At 200/s that is the machine, not the ramp: on this shared 2-core
    machine, late in the suite, a load process now and then waits over 1 ms for a core. More
    than 1 % and more than 10 late sends make an interval behind; a CI run on 2026-11-29 had
    that at 200/s (201/s sent). The ramp's stop at its knee cannot be checked in such a run;
    every other run checks it."""
    document = load_results(cell_directory(out, cell))
    intervals = [interval for rep in document.repetitions for agent in rep.agents
                 for interval in agent.intervals if interval.in_window]
    return bool(intervals) and all(not interval.not_sent for interval in intervals) and any(
        interval.late for interval in intervals)


def test_the_ramp_stops_at_the_knee_and_reports_the_sustainable_rate(
        lab: LabStatus, tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "ramp.yaml", lab)
    out = tmp_path / "sweep"
    swept = subprocess.run([sys.executable, "-m", "coordinator.cli", "sweep", "--plan",
                            str(plan), "--out", str(out)], cwd=ROOT, text=True,
                           capture_output=True, timeout=300, check=False,
                           env={**os.environ, "COLUMNS": "400"})
    print(swept.stdout)
    index = read_index(out)
    assert index is not None, swept.stderr
    for cell in index.cells:
        print(cell.key, cell.status, cell.ramp_stop, cell.flags,
              cell.headline.model_dump() if cell.headline else None)
    assert swept.returncode == 0, swept.stderr
    cells = sorted(index.cells, key=lambda cell: cell.ramp_step or 0)
    assert [cell.parameters["benchmark.builtin.rate"] for cell in cells] == RATES

    first = cells[0]  # far below the client's capacity: sustained, on schedule, within bound
    assert first.status == "complete" and first.headline is not None
    if first.ramp_stop is not None and jittered(out, first):
        pytest.skip(f"inconclusive: this machine could not keep even {RATES[0]:.0f}/s within "
                    f"1 ms ({first.ramp_stop}); see jittered()")
    assert first.ramp_stop is None
    assert first.headline is not None and first.headline.behind_schedule is False
    assert first.headline.sent_per_sec == pytest.approx(RATES[0], rel=0.05)
    assert first.headline.p99_usec <= P99_BOUND_USEC

    stopped = [cell for cell in cells if cell.ramp_stop is not None]
    assert len(stopped) == 1, [cell.ramp_stop for cell in cells]
    (stop,) = stopped
    assert stop.ramp_step in {1, 2}
    assert stop.status == "complete" and stop.headline is not None
    assert stop.headline.behind_schedule or stop.headline.p99_usec > P99_BOUND_USEC
    reason = stop.ramp_stop or ""
    assert "fell behind their schedule" in reason or "over the 50000 µs bound" in reason, reason
    above = [cell for cell in cells if (cell.ramp_step or 0) > (stop.ramp_step or 0)]
    assert [cell.status for cell in above] == ["skipped"] * len(above)
    assert not [cell.key for cell in above if cell_directory(out, cell).exists()]
    document = load_results(cell_directory(out, stop))
    assert all(agent.behind_schedule is not None
               for rep in document.repetitions for agent in rep.agents)

    (inventory,) = summarise(index, None).inventories
    sustained = inventory.sustainable
    if first.clean:
        assert sustained is not None and sustained.ramp_step in range(stop.ramp_step or 0)
        assert f"rate={sustained.parameters['benchmark.builtin.rate']} (" in swept.stdout
    else:  # the client-bound verdict reads the whole machine's CPU (the lab's hosts share it):
        # on a busy machine it flags the cell, and the report ranks nothing then
        assert sustained is None
    assert "ramp stop: " in swept.stdout
    assert "per inventory (p99 ≤ 50.000 ms)" in swept.stdout  # the ramp's SLO is the report's
    for ranked in (inventory.knee, inventory.best_within_bound):  # never the stop or above
        assert ranked is None or ranked.ramp_step in range(stop.ramp_step or 0)
