"""The http driver on a real lab (issue 16): an open loop at a fixed rate, HTTPS verified by
the lab's CA, and errors counted by kind, each against a real HTTP server process
(tests/http_server.py) that the test starts in the lab server's namespace and stops.

Needs root. One lab (``htp16`` on 198.18.239.0/24: one client, ``--tls`` for its CA and server
certificate) for the module, always torn down. Runs are short (0.5 s of warm-up, 1 s measured,
one repetition, no baseline). The server counts every request per path: the driver's counts
are checked against the server's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from coordinator.core.errors import FleetError
from coordinator.inventory.loader import load_inventory
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.lab.plan import LabPaths, tls_server_name
from coordinator.results import AgentRepetition, Repetition
from coordinator.run.runner import RunOutcome, run_benchmark
from tests.helpers import MeasureView, module_lab, wait_for_line

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

NAME = "htp16"
SUBNET = "198.18.239.0/24"
ROOT = Path(__file__).resolve().parents[2]
PORT = 8080
TLS_PORT = 8443
STARTUP_S = 30.0
CONNECTIONS = 4
MEASURE_S = 1.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    spec = LabSpec(name=NAME, clients=1, subnet=SUBNET, tls=True)
    yield from module_lab(spec, tmp_path_factory.mktemp("http-lab"))


@dataclass
class Served:
    """The server process's own counts per path, once it stopped."""

    address: str
    counts: dict[str, int] = field(default_factory=dict)


@contextmanager
def serving(lab: LabStatus, port: int, *, tls: bool = False) -> Iterator[Served]:
    """tests/http_server.py as a process in the lab server's namespace, on its lab address;
    stopped (stdin closed) at the end, its counts read from its last line."""
    host = next(host for host in lab.hosts if host.role == "server")
    command = [shutil.which("ip") or "ip", "netns", "exec", host.namespace, sys.executable,
               "-m", "tests.http_server", host.address, str(port)]
    if tls:
        keys = LabPaths.of(NAME, lab.spec.state_root).redis_dir
        command += ["--cert", str(keys / "server.crt"), "--key", str(keys / "server.key")]
    process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    served = Served(host.address)
    try:
        wait_for_line(process.stdout, "listening", STARTUP_S)
        yield served
    finally:
        try:
            assert process.stdin is not None
            process.stdin.close()
            lines = wait_for_line(process.stdout, "{", STARTUP_S)
            served.counts = json.loads(lines[-1])
            process.wait(STARTUP_S)
        finally:
            if process.poll() is None:  # it did not stop: nothing may be left running
                process.kill()
                process.wait(STARTUP_S)


def run(lab: LabStatus, tmp_path: Path, port: int, requests: list[dict[str, Any]], *,
        tls: dict[str, Any] | None = None, **http: Any) -> RunOutcome:
    """One short repetition of the http driver against the lab server's ``port``."""
    document = yaml.safe_load(lab.inventory_path.read_text())
    document["servers"] = [{"name": "rest", "host": "server", "port": port, "kind": "http",
                            **({"tls": tls} if tls is not None else {})}]
    document["benchmark"] = {
        "driver": "http", "repetitions": 1, "warmup": "500ms", "duration": f"{MEASURE_S}s",
        "interval": "500ms",
        "http": {"processes": 1, "connections": CONNECTIONS, "requests": requests, **http},
    }
    document["baseline"] = {"enabled": False}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "http.yaml"
    path.write_text(yaml.safe_dump(document))
    return run_benchmark(load_inventory(path), tmp_path / "out", MeasureView())


def only_agent(repetition: Repetition) -> AgentRepetition:
    (agent,) = repetition.agents
    return agent


def test_an_open_loop_sends_at_its_rate_and_the_server_sees_every_request(
        lab: LabStatus, tmp_path: Path) -> None:
    rate = 200  # requests/s: far below what the threaded server answers
    with serving(lab, PORT) as server:
        outcome = run(lab, tmp_path, PORT, [{"name": "ok", "path": "/ok"}], rate=rate)
    assert outcome.document.status == "complete"
    repetition = outcome.document.repetitions[0]
    agent = only_agent(repetition)
    window = [interval for interval in agent.intervals if interval.in_window]
    before = [interval for interval in agent.intervals if not interval.in_window
              and interval.index < window[0].index]
    print(f"target {rate}/s: sent {agent.sent_per_sec}/s, replies {agent.ops_per_sec:.1f}/s, "
          f"p50 {repetition.latency_usec.p50} µs, late {[i.late for i in agent.intervals]}, "
          f"not sent {[i.not_sent for i in agent.intervals]}, largest lateness "
          f"{[i.lateness_max_usec for i in agent.intervals]} µs")
    assert repetition.errors == {}
    assert all(i.sent is not None and i.late is not None and i.not_sent is not None
               and i.lateness_max_usec is not None and i.behind_schedule is not None
               for i in agent.intervals)
    # Every request the schedule sent reached the server, and nothing else did.
    assert sum(i.sent or 0 for i in agent.intervals) == server.counts["/ok"]
    # The window's sends are its points, give or take one per connection (where a period
    # falls), less those still queued at its end, plus those queued at its start.
    sent = sum(i.sent or 0 for i in window)
    queued = (window[-1].not_sent or 0) + (before[-1].not_sent or 0 if before else 0)
    assert abs(sent - rate * MEASURE_S) <= CONNECTIONS + queued
    assert agent.sent_per_sec is not None


def test_https_verified_by_the_labs_ca(lab: LabStatus, tmp_path: Path) -> None:
    """The client checks the server's certificate against the lab's CA, by the name in it (a
    name the certificate does not hold is refused before any load, in one line), and keeps
    doing so when the server closes connections (``/bye``): each reconnection shakes hands
    again, without blocking, inside the load's loop."""
    ca_file = str(LabPaths.of(NAME, lab.spec.state_root).tls_dir / "ca.crt")
    tls = {"ca_file": ca_file, "server_name": tls_server_name(NAME)}
    requests: list[dict[str, Any]] = [
        {"name": "score", "method": "POST", "path": "/ok", "body": {"json": {"id": "{seq}"}},
         "json_path": "score"},
        {"name": "bye", "path": "/bye", "weight": 1},
    ]
    with serving(lab, TLS_PORT, tls=True) as server:
        with pytest.raises(FleetError) as refused:
            run(lab, tmp_path / "refused", TLS_PORT, requests,
                tls={**tls, "server_name": "not-the-lab.example"})
        outcome = run(lab, tmp_path, TLS_PORT, requests, tls=tls)
    (reason,) = refused.value.lines()
    assert "certificate verify failed" in reason, reason
    repetition = outcome.document.repetitions[0]
    agent = only_agent(repetition)
    print(f"https: {agent.ops_per_sec:.1f} replies/s, p50 {repetition.latency_usec.p50} µs, "
          f"server {server.counts}")
    assert outcome.document.status == "complete"
    assert repetition.errors == {}
    assert set(repetition.commands) == {"score", "bye"}
    assert server.counts["/bye"] > CONNECTIONS  # connections were reopened, over TLS
    assert sum(i.requests for i in agent.intervals) == server.counts["/ok"] + server.counts["/bye"]
    assert sum(i.errors.get("connection", 0) for i in agent.intervals) == 0


def test_a_500_and_a_closed_connection_are_counted_by_kind(lab: LabStatus,
                                                          tmp_path: Path) -> None:
    with serving(lab, PORT) as server:
        outcome = run(lab, tmp_path, PORT, [
            {"name": "ok", "path": "/ok"}, {"name": "fail", "path": "/fail"},
            {"name": "drop", "path": "/drop"}])
    repetition = outcome.document.repetitions[0]
    agent = only_agent(repetition)
    errors: dict[str, int] = {}
    for interval in agent.intervals:
        for kind, count in interval.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    successes = sum(interval.count for interval in agent.intervals)
    print(f"errors {errors}, successes {successes}, server {server.counts}")
    assert set(errors) == {"http_5xx", "connection"}
    assert errors["http_5xx"] == server.counts["/fail"] > 0
    assert errors["connection"] == server.counts["/drop"] > 0
    assert successes == server.counts["/ok"] > 0
    assert set(repetition.commands) == {"ok"}  # the errors are in no histogram
