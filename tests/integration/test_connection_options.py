"""The builtin driver's connection options against the lab's real redis-server: TLS (CA, client
certificate, SNI, verify on and off, reconnection over TLS), an ACL user, RESP3 and SELECT.

Needs root. One lab (``tls`` on 198.18.222.0/24, built with ``--tls``: redis-server on 6379
plain and 6380 TLS) for the module, always torn down. The driver runs in this process (its load
processes reach the server through the lab bridge) or through ``coord run``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from agent.drivers.builtin import BuiltinDriver
from agent.drivers.errors import DriverError
from agent.drivers.intervals import LoadReport
from agent.drivers.spec import parse_spec
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.lab.plan import LabPaths, tls_server_name
from coordinator.results import load_results
from tests.helpers import module_lab, poll_until

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
SPEC = LabSpec(name="tls", clients=1, subnet="198.18.222.0/24", tls=True)
PATHS = LabPaths.of(SPEC.name, SPEC.state_root)
SERVER = "198.18.222.10"
DEADLINE = 30.0
ACL_USER, ACL_PASSWORD = "bench", "bench-password-1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(SPEC, tmp_path_factory.mktemp("tls-lab"))


@pytest.fixture
def plain(lab: LabStatus) -> Iterator[redis.Redis]:
    """The lab's Redis over plain TCP, emptied before and after."""
    client = redis.Redis(host=SERVER, port=6379, password=password(), socket_timeout=10)
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def driver() -> Iterator[BuiltinDriver]:
    made = BuiltinDriver()
    yield made
    made.close()


def password() -> str:
    return PATHS.redis_password.read_text().strip()


def tls_options(**changes: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "ca_file": str(PATHS.tls_dir / "ca.crt"),
        "cert_file": str(PATHS.tls_dir / "client.crt"),
        "key_file": str(PATHS.tls_dir / "client.key"),
        "server_name": None,
        "verify": True,
    }
    options.update(changes)
    return options


def spec(port: int = 6380, *, tls: dict[str, Any] | None = None, interval_s: float = 0.5,
         measure: int = 2, **target: Any) -> str:
    return json.dumps({
        "format": 2,
        "driver": "builtin",
        "target": {"address": SERVER, "port": port, "password": password(), "username": None,
                   "tls": tls, **target},
        "timeline": {"interval_ns": round(interval_s * 1e9), "warmup_intervals": 0,
                     "measure_intervals": measure},
        "histogram": {"lowest_usec": 1, "highest_usec": 60_000_000, "significant_figures": 3},
        "params": {"processes": 1, "connections": 4, "pipeline": 4, "set_ratio": 0.5,
                   "keyspace": 1000, "value_size": 32, "rate": None, "preload": False},
    })


def run_load(driver: BuiltinDriver, text: str, during: Any = None) -> LoadReport:
    parsed = parse_spec(text)
    driver.prepare(parsed)
    driver.start_at(time.time_ns() + 300_000_000)
    if during is not None:
        during(driver)
    poll_until(lambda: driver.state.done, parsed.timeline.total_s + DEADLINE, "the load to end")
    return driver.report()


def tls_clients(client: redis.Redis) -> list[dict[str, Any]]:
    """The server's clients connected to its TLS port."""
    return [entry for entry in client.client_list() if entry["laddr"].endswith(":6380")]


def coord_run(inventory: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "run", "-i", str(inventory), "--out", str(out),
         "--repetitions", "1", "--warmup", "1s", "--duration", "2s", "--no-baseline",
         "--set", "benchmark.builtin.connections=3", "--set", "benchmark.builtin.processes=1",
         "--set", "benchmark.builtin.set_ratio=1.0"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


# --- TLS ----------------------------------------------------------------------------------


def test_a_run_over_tls_with_a_client_certificate(
    lab: LabStatus, plain: redis.Redis, tmp_path: Path
) -> None:
    """The lab's own inventory targets the TLS port with the lab's CA and client certificate:
    a plain-TCP client would get nothing from that port."""
    inventory = yaml.safe_load(lab.inventory_path.read_text())
    assert inventory["servers"][0]["port"] == 6380
    assert inventory["servers"][0]["tls"]["cert_file"].endswith("client.crt")
    out = tmp_path / "results"
    result = coord_run(lab.inventory_path, out)
    assert result.returncode == 0, result.stderr
    repetition = load_results(out / "results.json").repetitions[0]
    assert repetition.count > 0
    assert repetition.errors == {}
    assert plain.dbsize() > 0  # the SETs reached the server


def test_tls_checks_the_server_name_unless_verify_is_off(
    lab: LabStatus, driver: BuiltinDriver
) -> None:
    # The certificate's DNS name, sent as SNI, is accepted (and its IP when no name is given).
    report = run_load(driver, spec(tls=tls_options(server_name=tls_server_name(SPEC.name))))
    assert report.errors == {}
    assert sum(interval.requests for interval in report.intervals) > 0
    driver.close()
    with pytest.raises(DriverError) as refused:
        BuiltinDriver().prepare(parse_spec(spec(tls=tls_options(server_name="not.the.server"))))
    assert refused.value.kind == "unreachable"
    assert "certificate verify failed" in refused.value.message
    assert "198.18.222.10:6380" in refused.value.message
    unverified = BuiltinDriver()
    try:
        prepared = unverified.prepare(parse_spec(spec(
            tls=tls_options(server_name="not.the.server", verify=False, ca_file=None))))
        assert prepared.connections == 4
    finally:
        unverified.close()


def test_tls_connections_reconnect_after_the_server_drops_them(
    lab: LabStatus, plain: redis.Redis, driver: BuiltinDriver
) -> None:
    """Killed TLS connections count their lost requests as ``connection`` errors and come
    back through the non-blocking TLS handshake while the load runs."""
    killed: list[int] = []

    def kill_then_wait_for_the_reconnection(load: BuiltinDriver) -> None:
        poll_until(lambda: len(tls_clients(plain)) == 4, DEADLINE, "4 TLS connections")
        before = {entry["id"] for entry in tls_clients(plain)}
        for entry in tls_clients(plain):
            plain.client_kill_filter(_id=entry["id"])
            killed.append(int(entry["id"]))

        def reconnected() -> bool:
            now = tls_clients(plain)
            return len(now) == 4 and not before & {entry["id"] for entry in now}

        poll_until(reconnected, DEADLINE, "4 new TLS connections")

    report = run_load(driver, spec(tls=tls_options(), interval_s=1.0, measure=3),
                      during=kill_then_wait_for_the_reconnection)
    assert len(killed) == 4
    assert report.errors.get("connection", 0) >= 4
    assert set(report.errors) == {"connection"}
    assert report.intervals[-1].requests > 0  # the load went on after the reconnection


# --- ACL user, RESP3, SELECT --------------------------------------------------------------


def test_an_acl_user_with_resp3_and_a_selected_database(
    lab: LabStatus, plain: redis.Redis, tmp_path: Path
) -> None:
    plain.acl_setuser(ACL_USER, enabled=True, passwords=[f"+{ACL_PASSWORD}"], keys=["key:*"],
                      commands=["+@all"], reset=True)
    plain.config_resetstat()
    secret = tmp_path / "bench.password"
    secret.write_text(ACL_PASSWORD + "\n")
    inventory = yaml.safe_load(lab.inventory_path.read_text())
    server = inventory["servers"][0]
    server.update(port=6379, username=ACL_USER, password_file=str(secret), protocol=3, db=3)
    del server["tls"]
    path = tmp_path / "acl.yaml"
    path.write_text(yaml.safe_dump(inventory))
    out = tmp_path / "results"
    result = coord_run(path, out)
    assert result.returncode == 0, result.stderr
    repetition = load_results(out / "results.json").repetitions[0]
    assert repetition.count > 0
    assert repetition.errors == {}
    stats = plain.info("commandstats")
    assert stats["cmdstat_hello"]["calls"] >= 3  # one HELLO 3 per connection
    assert stats["cmdstat_select"]["calls"] >= 3
    assert stats["cmdstat_auth"]["calls"] >= 3
    assert plain.dbsize() == 0  # database 0 untouched: every SET went to database 3
    with redis.Redis(host=SERVER, port=6379, username=ACL_USER, password=ACL_PASSWORD,
                     db=3, socket_timeout=10) as bench:
        assert bench.dbsize() > 0
    plain.acl_deluser(ACL_USER)


def test_a_wrong_acl_password_is_one_line(lab: LabStatus, plain: redis.Redis) -> None:
    plain.acl_setuser(ACL_USER, enabled=True, passwords=[f"+{ACL_PASSWORD}"], keys=["*"],
                      commands=["+@all"], reset=True)
    try:
        with pytest.raises(DriverError) as refused:
            BuiltinDriver().prepare(parse_spec(spec(6379, username=ACL_USER).replace(
                password(), "not-the-password")))
    finally:
        plain.acl_deluser(ACL_USER)
    assert refused.value.kind == "auth"
    assert "WRONGPASS" in refused.value.message
