"""A run loading two servers at once on a real lab (issue 16): the lab's Redis over RESP by
client1 (builtin driver) and a real HTTP server (tests/http_server.py, started in the lab
server's namespace) by client2 (http driver), one synchronized start, each server's figures
merged over its own client and counted as the server itself counted them.

Needs root. One lab (``multi16`` on 198.18.244.0/24, two clients) for the module, always torn
down; one repetition of 1 s warm-up + 2 s measured, no baseline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from coordinator.core import marks
from coordinator.inventory.loader import load_inventory
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.results import AgentRepetition
from coordinator.run.runner import run_benchmark
from tests.helpers import MeasureView, emptied_lab_redis, module_lab, wait_for_line

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

NAME = "multi16"
SUBNET = "198.18.244.0/24"
HTTP_PORT = 8080
ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 30.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(LabSpec(name=NAME, clients=2, subnet=SUBNET),
                          tmp_path_factory.mktemp("multi16"))


@pytest.fixture
def server(lab: LabStatus) -> Iterator[redis.Redis]:
    yield from emptied_lab_redis(lab)


@contextmanager
def serving_as_lab_user(lab: LabStatus) -> Iterator[dict[str, int]]:
    """tests/http_server.py in the lab server's namespace as its host's unprivileged user (as
    a real service runs, so the server host's agent, that user too, sees it listen and
    samples its process), by the system's Python (stdlib only); stopped at the end (stdin
    closed), its counts read from its last line."""
    host = next(host for host in lab.hosts if host.role == "server")
    command = [shutil.which("ip") or "ip", "netns", "exec", host.namespace,
               shutil.which("setpriv") or "setpriv", f"--reuid={host.user}",
               f"--regid={host.user}", "--clear-groups", "/usr/bin/python3", "-m",
               "tests.http_server", host.address, str(HTTP_PORT)]
    process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    counts: dict[str, int] = {}
    try:
        wait_for_line(process.stdout, "listening", STARTUP_S)
        yield counts
    finally:
        try:
            assert process.stdin is not None
            process.stdin.close()
            counts.update(json.loads(wait_for_line(process.stdout, "{", STARTUP_S)[-1]))
            process.wait(STARTUP_S)
        finally:
            if process.poll() is None:  # it did not stop: nothing may be left running
                process.kill()
                process.wait(STARTUP_S)


def two_targets(lab: LabStatus, path: Path) -> Path:
    """The lab's inventory loading its Redis from client1 and an HTTP server from client2."""
    document = yaml.safe_load(lab.inventory_path.read_text())
    redis_server = document["servers"][0]
    document["servers"] = [redis_server, {"name": "rest", "host": redis_server["host"],
                                          "port": HTTP_PORT, "kind": "http"}]
    benchmark: dict[str, Any] = document.setdefault("benchmark", {})
    benchmark.update({
        "repetitions": 1, "warmup": "1s", "duration": "2s", "interval": "500ms",
        "targets": [
            {"server": redis_server["name"], "driver": "builtin", "clients": ["client1"]},
            {"server": "rest", "driver": "http", "clients": ["client2"]}],
        "http": {"processes": 1, "connections": 2,
                 "requests": [{"name": "ok", "path": "/ok"}]},
    })  # fmt: skip
    benchmark.setdefault("builtin", {}).update({"processes": 1, "connections": 2,
                                                "preload": False})
    document["baseline"] = {"enabled": False}
    path.write_text(yaml.safe_dump(document))
    return path


def sent(agent: AgentRepetition) -> int:
    """Every request the agent finished, warm-up and drain included: what its server saw."""
    return sum(interval.requests for interval in agent.intervals)


def in_window(agent: AgentRepetition) -> int:
    return sum(interval.count for interval in agent.intervals if interval.in_window)


def test_two_servers_loaded_at_once_each_counted_as_its_server_counted(
        lab: LabStatus, tmp_path: Path, server: redis.Redis) -> None:
    inventory = load_inventory(two_targets(lab, tmp_path / "two.yaml"))
    redis_name = inventory.inventory.servers[0].name
    server.config_resetstat()
    with serving_as_lab_user(lab) as http:
        outcome = run_benchmark(inventory, tmp_path / "out", MeasureView())
    stats = server.info("commandstats")
    redis_calls = sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
                      for name in ("get", "set"))
    document = outcome.document
    assert document.status == "complete", document.failure
    (repetition,) = document.repetitions
    agents = {agent.host: agent for agent in repetition.agents}
    targets = repetition.targets
    print(f"redis {targets[redis_name].ops_per_sec:.0f}/s p50 "
          f"{targets[redis_name].latency_usec.p50} µs, rest {targets['rest'].ops_per_sec:.0f}/s "
          f"p50 {targets['rest'].latency_usec.p50} µs; redis counted {redis_calls}, http "
          f"server counted {http}; start skew {repetition.start_skew_usec:.0f} µs")
    assert set(targets) == {redis_name, "rest"} and set(agents) == {"client1", "client2"}
    assert (targets[redis_name].clients, targets["rest"].clients) == (["client1"], ["client2"])
    # each server saw exactly what its own client sent, and nothing of the other's
    assert sent(agents["client1"]) == redis_calls > 0
    assert sent(agents["client2"]) == http["/ok"] > 0
    assert set(targets[redis_name].commands) <= {"GET", "SET"}
    assert set(targets["rest"].commands) == {"ok"}
    for name, client in ((redis_name, "client1"), ("rest", "client2")):
        assert targets[name].count == in_window(agents[client]) > 0
        assert targets[name].errors == {}
    # the error verdict judged each server on its own requests
    (errors,) = [v for v in repetition.verdicts if v.name == "error-rate-above-threshold"]
    assert errors.state == "clear"
    assert f"{redis_name}: error rate 0.00%; rest: error rate 0.00%" in errors.summary
    # the repetition's own figures are the first target's (Redis), never a mix
    assert (repetition.count, repetition.histogram) == (targets[redis_name].count,
                                                        targets[redis_name].histogram)
    # one T0 for both: every client measured the same window
    windows = {tuple(i.index for i in agent.intervals if i.in_window) for agent in agents.values()}
    assert len(windows) == 1
    # both servers' processes were sampled on the server host
    (server_host,) = [m for m in repetition.metrics if "server" in m.roles]
    names = {process.name for interval in server_host.intervals
             for process in interval.server_processes}
    print(f"server processes sampled: {sorted(names)}")
    assert "redis-server" in names and any(name.startswith("python") for name in names), names
    # each with the port it listens on, so each server was judged server-bound on its own
    redis_port = inventory.inventory.servers[0].port
    ports = {(process.name, tuple(process.ports)) for interval in server_host.intervals
             for process in interval.server_processes}
    assert ("redis-server", (redis_port,)) in ports, ports
    assert all(found == ((redis_port,) if name == "redis-server" else (HTTP_PORT,))
               for name, found in ports), ports
    bound = [v.summary for v in repetition.verdicts if v.name == marks.SERVER_BOUND.name]
    print(f"server-bound: {bound}")
    assert len(bound) == 2
    assert f"the server {redis_name} on server" in bound[0]
    assert "the server rest on server" in bound[1]
