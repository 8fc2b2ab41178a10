"""A whole `coord run` with the http driver, without root: real agents on this machine over
the local transport (tests/local_transport.py), a real HTTP server on loopback
(tests/http_server.py). Not a lab test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from coordinator.inventory.loader import load_inventory
from coordinator.results import load_results
from coordinator.run.runner import run_benchmark
from tests.helpers import MeasureView, poll_until
from tests.http_server import CountingServer, http_server
from tests.local_transport import LocalTransport

DEADLINE = 60.0


@pytest.fixture
def transport(tmp_path: Path) -> Iterator[LocalTransport]:
    local = LocalTransport(tmp_path / "hosts")
    try:
        yield local
    finally:
        local.kill_all()


def write_inventory(directory: Path, port: int) -> Path:
    hosts = [{"name": "server", "address": "127.0.0.1", "roles": ["server"]}]
    hosts += [{"name": f"client{n}", "address": f"127.0.0.1{n}", "roles": ["client"]}
              for n in (1, 2)]
    document = {
        "version": 1, "name": "local-http", "hosts": hosts,
        "servers": [{"name": "rest", "host": "server", "port": port, "kind": "http",
                     "http": {"base_path": "", "headers": {"X-Run": "coord"}}}],
        "benchmark": {
            "driver": "http", "repetitions": 2, "warmup": "500ms", "duration": "1s",
            "interval": "500ms",
            "http": {"connections": 2, "processes": 1, "requests": [
                {"name": "score", "method": "POST", "path": "/ok",
                 "body": {"json": {"customer": "c:{rand_int}"}}, "json_path": "score"},
                {"name": "fail", "path": "/fail"},
            ]},
        },
        "baseline": {"enabled": False},
    }
    path = directory / "http.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_local_run_with_the_http_driver_counts_what_the_server_answered(
        tmp_path: Path, transport: LocalTransport) -> None:
    server: CountingServer
    with http_server() as server:
        loaded = load_inventory(write_inventory(tmp_path, server.port))
        run_benchmark(loaded, tmp_path / "out", MeasureView(), transport=transport)
        poll_until(lambda: not transport.family(), DEADLINE, "every agent and process to exit")
    document = load_results(tmp_path / "out" / "results.json")
    assert document.status == "complete"
    assert len(document.repetitions) == 2
    for repetition in document.repetitions:
        assert {agent.host for agent in repetition.agents} == {"client1", "client2"}
        assert repetition.count > 0
    assert server.counts["/ok"] > 0 and server.counts["/fail"] > 0
