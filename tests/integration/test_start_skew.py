"""The recorded start skew against the load's first requests as the kernel saw them leave.

Needs root. One lab (``skw`` on 198.18.201.0/24: two clients and a server) for the module,
always torn down. In each client's namespace an ``AF_PACKET`` witness
(:mod:`tests.first_requests`) records the instant each connection's first GET or SET was
handed to the device, inside its ``send`` call, on the kernel's clock. The lab's hosts share
that clock (namespaces, one kernel), so the agents' clocks are the witness's and their true
offsets to the coordinator are zero: the coordinator's offset estimates are off by their
error alone. That makes three checks that hold exactly, none of them timed:

* every reported first request was read after that request left (its ``send`` had returned),
  and the agent's last connection's first request after the last one left;
* the skew recorded in ``results.json`` is within its reported uncertainty of the skew on the
  agents' (common) clock;
* and within that uncertainty plus the largest send-to-report lag of the skew on the wire.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.core.histograms import HISTOGRAM_PARAMS
from coordinator.core.reports import AgentReport, agent_report
from coordinator.inventory.loader import load_inventory
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.remote.fleet import Fleet
from coordinator.run.runner import check_targets, run
from tests.helpers import MeasureView, module_lab, wait_for_line

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
NAME = "skw"
SUBNET = "198.18.201.0/24"
CONNECTIONS = 2  # per client, in one load process
WITNESS_SECONDS = 240.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(LabSpec(name=NAME, clients=2, subnet=SUBNET),
                          tmp_path_factory.mktemp("skew"))


def witness(namespace: str, port: int) -> subprocess.Popen[str]:
    """The first-request witness in ``namespace``, listening once this returns."""
    process = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", "tests.first_requests",
         "--port", str(port), "--connections", str(CONNECTIONS),
         "--seconds", str(WITNESS_SECONDS)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    wait_for_line(process.stdout, "ready", timeout=60)
    return process


def seen(process: subprocess.Popen[str]) -> list[int]:
    """The witness's first-request instants, one per connection."""
    out, _ = process.communicate(timeout=WITNESS_SECONDS + 30)
    firsts = sorted(int(ns) for ns in json.loads(out.strip().splitlines()[-1]).values())
    assert len(firsts) == CONNECTIONS, out
    return firsts


def test_the_recorded_skew_and_its_uncertainty_cover_the_first_requests_on_the_wire(
        lab: LabStatus, tmp_path: Path) -> None:
    inventory = load_inventory(lab.inventory_path, [
        "benchmark.warmup=0s", "benchmark.duration=2s", "benchmark.repetitions=1",
        "benchmark.builtin.processes=1", f"benchmark.builtin.connections={CONNECTIONS}",
        "baseline.enabled=false",
    ]).inventory
    plan = check_targets(inventory)
    clients = [host for host in lab.hosts if host.role == "client"]
    port = inventory.servers[0].port
    witnesses = {host.name: witness(host.namespace, port) for host in clients}
    reports: dict[str, AgentReport] = {}
    try:
        with Fleet(plan.inventory) as fleet:

            def keep_reports(step: str) -> None:
                if step == "merge":  # the agents have just delivered them
                    for host in clients:
                        link = fleet.sessions[host.name].link
                        reports[host.name] = agent_report(link.load_report(), host.name,
                                                          HISTOGRAM_PARAMS)

            outcome = run(fleet, plan, MeasureView(), out=tmp_path / "results",
                          on_step=keep_reports)
        wire = {name: seen(process) for name, process in witnesses.items()}
    finally:
        for process in witnesses.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    repetition = outcome.document.repetitions[0]
    uncertainty = repetition.start_skew_uncertainty_usec
    assert uncertainty is not None and uncertainty > 0
    assert repetition.first_request_spread_usec is not None
    for name, report in reports.items():
        # A first request is read once its send returned, so after it left; a reading taken
        # before the send (at the end of the wait for T0) is earlier than the wire.
        assert report.started_ns >= wire[name][0], (name, report.started_ns - wire[name][0])
        last = report.started_ns + report.first_request_spread_ns
        assert last >= wire[name][-1], (name, last - wire[name][-1])

    # One process per client: each agent's start is that process's first request.
    starts = [report.started_ns for report in reports.values()]
    on_agent_clock_usec = (max(starts) - min(starts)) / 1000
    assert abs(repetition.start_skew_usec - on_agent_clock_usec) <= uncertainty, (
        repetition.start_skew_usec, on_agent_clock_usec, uncertainty)

    on_wire = [firsts[0] for firsts in wire.values()]
    on_wire_usec = (max(on_wire) - min(on_wire)) / 1000
    lag_usec = max(reports[name].started_ns - wire[name][0] for name in reports) / 1000
    assert abs(repetition.start_skew_usec - on_wire_usec) <= uncertainty + lag_usec, (
        repetition.start_skew_usec, on_wire_usec, uncertainty, lag_usec)
