"""The http driver against a real HTTP/1.1 server on loopback (tests/http_server.py): counts
equal the server's own, errors counted by kind, a run that leaves nothing behind. Short loads
(intervals of half a second); every wait is a poll with a deadline."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent.drivers.http_driver import HttpDriver
from agent.drivers.intervals import LoadReport
from agent.drivers.spec import parse_spec
from tests.helpers import poll_until, process_gone
from tests.http_server import CountingServer, http_server

DEADLINE = 30.0
START_MARGIN_NS = 300_000_000


def template(name: str, path: str, **fields: Any) -> dict[str, Any]:
    request = {"name": name, "method": "GET", "path": path, "headers": {}, "body": None,
               "weight": 1, "expect_status": None, "json_path": None}
    request.update(fields)
    return request


def make_spec(port: int, requests: list[dict[str, Any]], connections: int = 4,
              processes: int = 1) -> dict[str, Any]:
    return {
        "format": 2, "driver": "http",
        "target": {"address": "127.0.0.1", "port": port, "password": None, "username": None,
                   "tls": None},
        "timeline": {"interval_ns": 500_000_000, "warmup_intervals": 1,
                     "measure_intervals": 2},
        "histogram": {"lowest_usec": 1, "highest_usec": 60_000_000, "significant_figures": 3},
        "params": {"processes": processes, "connections": connections, "keyspace": 1000,
                   "timeout_ns": 5_000_000_000, "rate": None, "base_path": "",
                   "headers": {"X-Bench": "coord"}, "requests": requests, "seed": 7},
    }


@pytest.fixture
def server() -> Iterator[CountingServer]:
    with http_server() as running:
        yield running


@pytest.fixture
def driver() -> Iterator[HttpDriver]:
    made = HttpDriver()
    yield made
    pids = made.worker_pids()
    made.close()
    for pid in pids:
        poll_until(lambda pid=pid: process_gone(pid), DEADLINE, f"load process {pid} to exit")


def run_load(driver: HttpDriver, spec: dict[str, Any]) -> LoadReport:
    parsed = parse_spec(json.dumps(spec))
    driver.prepare(parsed)
    driver.start_at(time.time_ns() + START_MARGIN_NS)
    poll_until(lambda: driver.state.done, parsed.timeline.total_s + DEADLINE, "the load to end")
    return driver.report()


def totals(report: LoadReport) -> tuple[int, dict[str, int], dict[str, int]]:
    """Responses, histogram counts per template and errors per kind, over every interval."""
    requests = 0
    counts: dict[str, int] = {}
    errors: dict[str, int] = {}
    for interval in report.intervals:
        requests += interval.requests
        for name, command in interval.commands.items():
            counts[name] = counts.get(name, 0) + command.count
        for kind, count in interval.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    return requests, counts, errors


def test_counts_per_template_equal_the_servers_own(server: CountingServer,
                                                   driver: HttpDriver) -> None:
    body = {"json": {"id": "{seq}", "key": "k:{rand_int}"}}
    spec = make_spec(server.port, [
        template("score", "/ok", method="POST", body=body, json_path="outputs.0.data"),
        template("chunked", "/chunked", weight=2, json_path="score"),
    ], processes=2)
    report = run_load(driver, spec)
    requests, counts, errors = totals(report)
    assert errors == {}
    assert counts["score"] == server.counts["/ok"] > 0
    assert counts["chunked"] == server.counts["/chunked"] > 0
    assert requests == sum(server.counts.values())
    sent = [json.loads(raw) for raw in server.bodies]
    assert all(not {"id", "key"} ^ set(item) for item in sent)
    assert len({item["id"] for item in sent}) == len(sent)  # {seq} differs per request
    assert all(item["key"].startswith("k:") and int(item["key"][2:]) < 1000 for item in sent)


def test_a_500_a_404_and_a_dropped_connection_are_counted_by_kind(
        server: CountingServer, driver: HttpDriver) -> None:
    spec = make_spec(server.port, [template("ok", "/ok"), template("fail", "/fail"),
                                   template("missing", "/missing"), template("drop", "/drop"),
                                   template("bye", "/bye")])
    report = run_load(driver, spec)
    requests, counts, errors = totals(report)
    assert errors["http_5xx"] == server.counts["/fail"] > 0
    assert errors["http_4xx"] == server.counts["/missing"] > 0
    assert errors["connection"] == server.counts["/drop"] > 0
    assert counts["ok"] == server.counts["/ok"]
    assert counts["bye"] == server.counts["/bye"] > 0  # Connection: close is no error
    assert "fail" not in counts or counts["fail"] == 0
    assert requests == sum(server.counts.values()) - server.counts["/drop"]
