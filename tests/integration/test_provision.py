"""`coord provision` against a real lab: the playbooks converge, the server role leaves a Redis
with the inventory's port, bind address and password, a rerun changes nothing, changed settings
restart it (`--tags redis`), and `coord run` then succeeds against that Redis.

Needs root. One lab (``ans`` on 198.18.226.0/24: one client and a server), always torn down.
The lab's hosts are reached as their own unprivileged users (no root login, no sudo), so the
tasks that need root are skipped (``--skip-tags system``: packages, users, limits, systemd,
kernel settings; the lab's hosts share this machine's filesystem, where the packages are
installed) and Redis runs as the SSH user (``coord_redis_service=user``). It listens on port
6390 with a password of its own, beside the lab's own Redis on 6379, which is left alone; lab
teardown kills it with every other process of the lab's users.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
import yaml

from coordinator.lab.api import LabSpec, LabStatus
from tests.conftest import RunCoord
from tests.helpers import module_lab, poll_until

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.skipif(not (Path(sys.executable).parent / "ansible-playbook").exists(),
                       reason="the ansible extra is not installed"),
]

SPEC = LabSpec(name="ans", clients=1, subnet="198.18.226.0/24")
SERVER_ADDRESS = "198.18.226.10"
PROVISIONED_PORT = 6390
LAB_RUN = ("--skip-tags", "system", "-e", "coord_redis_service=user")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(SPEC, tmp_path_factory.mktemp("provision-lab"))


@pytest.fixture(scope="module")
def provisioned(lab: LabStatus, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The lab's inventory with its Redis moved to port 6390 and a password file of its own."""
    directory = tmp_path_factory.mktemp("provision")
    password = secrets.token_urlsafe(24)
    password_file = directory / "redis.password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    document = yaml.safe_load(lab.inventory_path.read_text())
    document["servers"][0]["port"] = PROVISIONED_PORT
    document["servers"][0]["password_file"] = str(password_file)
    inventory = directory / "hosts.yaml"
    inventory.write_text(yaml.safe_dump(document, sort_keys=False))
    return inventory, password


def ssh_masters() -> list[str]:
    """The OpenSSH masters of coord provision still running (their sockets are in its scratch
    directory, named coord-provision-*)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if line.startswith("ssh") and "coord-provision-" in line:
            found.append(line)
    return found


def summary(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("server:", "client1:"))]


def test_provision_converges_reruns_with_no_change_and_coord_run_succeeds(
        provisioned: tuple[Path, str], run_coord: RunCoord, tmp_path: Path) -> None:
    inventory, password = provisioned
    first = run_coord("provision", "-i", str(inventory), *LAB_RUN, "--log",
                      str(tmp_path / "first.log"))
    assert first.status == 0, first.stderr + (tmp_path / "first.log").read_text()
    print(first.stdout)
    lines = summary(first.stdout)
    assert any(line.startswith("server: ") and "Start redis" in line for line in lines), lines
    assert any(line.startswith("client1: no change") for line in lines), lines
    assert password not in (tmp_path / "first.log").read_text()
    # the tasks shared one SSH master per host, ended with the playbook (they would otherwise
    # idle for 30 s)
    poll_until(lambda: not ssh_masters(), 5.0, "coord provision's SSH masters to end")

    served = redis.Redis(host=SERVER_ADDRESS, port=PROVISIONED_PORT, password=password,
                         socket_timeout=10)
    try:
        assert served.ping()
        assert served.config_get("bind") == {"bind": SERVER_ADDRESS}
        assert served.config_get("port") == {"port": str(PROVISIONED_PORT)}
        assert served.config_get("save") == {"save": ""}
        assert served.config_get("appendonly") == {"appendonly": "no"}
    finally:
        served.close()
    anonymous = redis.Redis(host=SERVER_ADDRESS, port=PROVISIONED_PORT, socket_timeout=10)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()

    second = run_coord("provision", "-i", str(inventory), *LAB_RUN)
    assert second.status == 0, second.stderr
    print(second.stdout)
    assert all("no change" in line for line in summary(second.stdout)), second.stdout
    assert second.stdout.strip().splitlines()[-1] == "no change"

    changed_settings = '{"coord_redis_settings": {"save": "\\"\\"", "maxmemory": "64mb"}}'
    third = run_coord("provision", "-i", str(inventory), "--tags", "redis", *LAB_RUN,
                      "-e", changed_settings)
    assert third.status == 0, third.stderr
    server_line = next(line for line in summary(third.stdout) if line.startswith("server:"))
    assert "Stop the instance to apply its new configuration" in server_line, server_line
    restarted = redis.Redis(host=SERVER_ADDRESS, port=PROVISIONED_PORT, password=password,
                            socket_timeout=10)
    try:
        assert restarted.config_get("maxmemory") == {"maxmemory": str(64 * 1024 * 1024)}
    finally:
        restarted.close()

    result = run_coord("run", "-i", str(inventory), "--repetitions", "1", "--warmup", "1s",
                       "--duration", "2s", "--no-baseline", "--out", str(tmp_path / "results"))
    assert result.status == 0, result.stderr
    assert (tmp_path / "results" / "results.json").is_file()


def test_a_host_whose_key_is_unknown_is_refused_and_named(
        provisioned: tuple[Path, str], run_coord: RunCoord, tmp_path: Path) -> None:
    inventory, _ = provisioned
    document = yaml.safe_load(inventory.read_text())
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    document["ssh"]["known_hosts"] = str(empty_known_hosts)
    strangers = tmp_path / "hosts.yaml"
    strangers.write_text(yaml.safe_dump(document, sort_keys=False))
    result = run_coord("provision", "-i", str(strangers), *LAB_RUN)
    assert result.status == 1
    errors = result.stderr.strip().splitlines()
    for host in ("server", "client1"):
        assert any(line.startswith(f"{host}: ") and "Host key verification failed" in line
                   for line in errors), errors
    assert empty_known_hosts.read_text() == ""
