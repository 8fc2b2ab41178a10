"""Using your own machines, on a real lab: held agents, data and source addresses, doctor,
clean.

Needs root. One lab (``cown`` on 198.18.160.0/24: two clients and a server with real Redis)
for the module, always torn down. The server's namespace gets a second address with a second
redis-server on it (its data address, not its SSH address); client1 gets a second address the
load leaves from.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from coordinator.core.errors import CoordError
from coordinator.inventory.loader import load_inventory
from coordinator.inventory.server_auth import target_password
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.lab.plan import LabPaths, home_dir
from coordinator.results import load_results
from coordinator.run.runner import run_benchmark
from tests.helpers import MeasureView, module_lab, poll_until, process_gone, wait_for_line

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
NAME = "cown"
SUBNET = "198.18.160.0/24"
DATA_ADDRESS = "198.18.160.50"
DATA_PORT = 6390
SOURCE_ADDRESS = "198.18.160.51"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(LabSpec(name=NAME, clients=2, subnet=SUBNET),
                          tmp_path_factory.mktemp("own"))


def netns(lab: LabStatus, host: str, *argv: str) -> list[str]:
    namespace = next(h.namespace for h in lab.hosts if h.name == host)
    return ["ip", "netns", "exec", namespace, *argv]


@pytest.fixture(scope="module")
def data_redis(lab: LabStatus, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[redis.Redis]:
    """A second redis-server on a second address of the server host (its data address), and a
    second address on client1 for the load to leave from. It asks for the lab's password, read
    from a config file: the inventory's password_file serves both servers."""
    ns = {h.name: h.namespace for h in lab.hosts}
    password = lab_password(lab)
    config = tmp_path_factory.mktemp("data-redis") / "redis.conf"
    config.write_text(f"requirepass {password}\n")
    config.chmod(0o600)
    subprocess.run(["ip", "-n", ns["server"], "addr", "add", f"{DATA_ADDRESS}/24", "dev",
                    "eth0"], check=True)
    subprocess.run(["ip", "-n", ns["client1"], "addr", "add", f"{SOURCE_ADDRESS}/24", "dev",
                    "eth0"], check=True)
    server = subprocess.Popen(
        netns(lab, "server", shutil.which("redis-server") or "redis-server", str(config),
              "--bind", DATA_ADDRESS, "--port", str(DATA_PORT), "--protected-mode", "no",
              "--save", "", "--appendonly", "no", "--daemonize", "no"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host=DATA_ADDRESS, port=DATA_PORT, password=password,
                         socket_timeout=10)
    try:
        poll_until(lambda: answers_ping(client), 30, "the second redis-server to answer PING")
        yield client
    finally:
        client.close()
        server.terminate()
        server.wait(30)


def lab_password(lab: LabStatus) -> str | None:
    return target_password(load_inventory(lab.inventory_path).inventory)


def answers_ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def coord(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


def pid_file(lab: LabStatus, host: str) -> Path:
    user = next(h.user for h in lab.hosts if h.name == host)
    return home_dir(user) / ".cache" / "coord" / "hosts" / host / "agent.pid"


def held_pids(lab: LabStatus) -> dict[str, int]:
    pids = {}
    for host in lab.hosts:
        path = pid_file(lab, host.name)
        if path.exists():
            pids[host.name] = json.loads(path.read_text())["pid"]
    return pids


# --- 18: agents status shows held agents ------------------------------------------------------


def test_agents_status_shows_the_held_agents_and_starts_none(lab: LabStatus) -> None:
    inventory = str(lab.inventory_path)
    deploy = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "deploy", "-i", inventory, "--hold"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_line(deploy.stderr, "holding 3 agent(s)", timeout=120)
        before = held_pids(lab)
        assert set(before) == {"server", "client1", "client2"}

        status = coord("agents", "status", "-i", inventory)

        assert status.returncode == 0, status.stderr
        assert "3 agent(s) held by another coord process" in status.stdout
        for pid in before.values():
            assert str(pid) in status.stdout
        assert "stopped" not in status.stderr  # no agent of its own to stop
        assert held_pids(lab) == before  # no new agent took over a pid file
        stop = coord("agents", "stop", "-i", inventory)
        assert stop.returncode == 0, stop.stderr
        for host, pid in before.items():
            assert f"{host}: stopped agent pid {pid}" in stop.stdout
        poll_until(lambda: all(map(process_gone, before.values())), 30,
                   "the held agents to exit")
    finally:
        if deploy.poll() is None:
            deploy.send_signal(signal.SIGINT)
        deploy.communicate(timeout=60)


def test_agents_status_starts_agents_when_none_is_held(lab: LabStatus) -> None:
    status = coord("agents", "status", "-i", str(lab.inventory_path))
    assert status.returncode == 0, status.stderr
    assert "3 agent(s)" in status.stdout
    assert "held" not in status.stdout
    assert held_pids(lab) == {}


# --- 19: a server's data address and a client's load source address ------------------------




QUICK = ["baseline.enabled=false", "benchmark.repetitions=1", "benchmark.warmup=1s",
         "benchmark.duration=2s",
         "benchmark.builtin.connections=3", "benchmark.builtin.processes=1"]


def test_the_load_goes_to_the_data_address_from_the_source_address(
    lab: LabStatus, data_redis: redis.Redis, tmp_path: Path
) -> None:
    data_redis.flushall()
    ssh_redis = redis.Redis(host=lab_address(lab, "server"), port=6379,
                            password=lab_password(lab), socket_timeout=10)
    ssh_redis.flushall()
    loaded = load_inventory(lab.inventory_path, [
        *QUICK, f"servers[0].address={DATA_ADDRESS}", f"servers[0].port={DATA_PORT}",
        f"hosts[1].load_source_address={SOURCE_ADDRESS}",
    ])
    assert loaded.inventory.hosts[1].name == "client1"
    view = MeasureView()
    peers: list[str] = []
    failures: list[BaseException] = []

    def list_clients_when_measuring() -> None:
        try:
            assert view.measuring.wait(60), "the measure phase never started"
            peers.extend(entry["addr"].rsplit(":", 1)[0] for entry in data_redis.client_list())
        except BaseException as exc:  # noqa: BLE001 - reported by the test body
            failures.append(exc)

    lister = threading.Thread(target=list_clients_when_measuring)
    lister.start()
    outcome = run_benchmark(loaded, tmp_path / "results", view)
    lister.join(30)
    assert not failures, failures
    assert outcome.document.status == "complete"
    assert outcome.document.repetitions[0].count > 0
    load_peers = sorted(peer for peer in peers if peer != "198.18.160.1")
    assert load_peers == sorted([SOURCE_ADDRESS] * 3 + [lab_address(lab, "client2")] * 3)
    assert ssh_redis.dbsize() == 0  # nothing went to the SSH address
    ssh_redis.close()
    document = load_results(tmp_path / "results")
    assert document.target is not None
    assert (document.target.address, document.target.port) == (DATA_ADDRESS, DATA_PORT)
    assert document.target.source_addresses == {"client1": SOURCE_ADDRESS}


def test_a_source_address_the_client_lacks_is_one_line_naming_it(
    lab: LabStatus, data_redis: redis.Redis, tmp_path: Path
) -> None:
    loaded = load_inventory(lab.inventory_path, [
        *QUICK, "hosts[2].load_source_address=198.18.160.99",
    ])
    with pytest.raises(CoordError) as caught:
        run_benchmark(loaded, tmp_path / "results", MeasureView())
    lines = caught.value.lines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("client2: ")
    assert "load_source_address 198.18.160.99 is not an address of this host" in lines[0]


def lab_address(lab: LabStatus, host: str) -> str:
    return next(h.address for h in lab.hosts if h.name == host)


# --- 20: doctor and clean ------------------------------------------------------------------


def edited_inventory(lab: LabStatus, directory: Path, edit: Callable[[dict[str, Any]], None]
                     ) -> str:
    data = yaml.safe_load(lab.inventory_path.read_text())
    edit(data)
    path = directory / "edited.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_doctor_finds_no_problem_on_a_healthy_lab(lab: LabStatus) -> None:
    result = coord("doctor", "-i", str(lab.inventory_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 host(s) checked: no problems" in result.stdout


def test_doctor_names_a_target_nobody_listens_on_and_a_host_it_cannot_reach(
    lab: LabStatus, tmp_path: Path
) -> None:
    def break_it(data: dict[str, Any]) -> None:
        data["servers"][0]["port"] = 6399
        data["hosts"][2]["port"] = 2222  # client2's sshd listens on 22 only

    result = coord("doctor", "-i", edited_inventory(lab, tmp_path, break_it))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stdout.splitlines() if "│" in line]
    target = [line for line in lines if "client1" in line]
    assert len(target) == 1 and "target" in target[0], result.stdout
    assert f"{lab_address(lab, 'server')}:6399: connection refused" in target[0]
    unreachable = [line for line in lines if "client2" in line]
    assert len(unreachable) == 1 and "ssh" in unreachable[0], result.stdout
    assert "2 problem(s)" in result.stdout


def test_clean_stops_the_agent_and_removes_the_cache_dir_and_nothing_else(
    lab: LabStatus
) -> None:
    inventory = str(lab.inventory_path)
    homes = {host.name: home_dir(host.user) for host in lab.hosts}
    keep = {name: home / ".cache" / "not-coords.txt" for name, home in homes.items()}
    for name, path in keep.items():
        user = next(h.user for h in lab.hosts if h.name == name)
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700)
            shutil.chown(path.parent, user)
        path.write_text("keep me")
        shutil.chown(path, user)
    deploy = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "deploy", "-i", inventory, "--hold"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_line(deploy.stderr, "holding 3 agent(s)", timeout=120)
        pids = held_pids(lab)
        assert all((home / ".cache" / "coord" / "bundles").is_dir() for home in homes.values())

        result = coord("agents", "clean", "-i", inventory)

        assert result.returncode == 0, result.stderr
        for name, pid in pids.items():
            assert f"{name}: stopped agent pid {pid}; removed " in result.stdout
        poll_until(lambda: all(map(process_gone, pids.values())), 30, "the agents to exit")
    finally:
        if deploy.poll() is None:
            deploy.send_signal(signal.SIGINT)
        deploy.communicate(timeout=60)
    for name, home in homes.items():
        assert not (home / ".cache" / "coord").exists()
        assert keep[name].read_text() == "keep me"
        assert (home / ".cache").is_dir()
        keep[name].unlink()
    again = coord("agents", "clean", "-i", inventory)
    assert again.returncode == 0, again.stderr
    assert "server: nothing to remove" in again.stdout


@pytest.mark.parametrize("cache_dir", ["~", "/", "~/.cache"])
def test_clean_refuses_a_cache_dir_that_is_not_clearly_coords(
    lab: LabStatus, tmp_path: Path, cache_dir: str
) -> None:
    def point_at(data: dict[str, Any]) -> None:
        data["agent"] = {"cache_dir": cache_dir}

    result = coord("agents", "clean", "-i", edited_inventory(lab, tmp_path, point_at))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("agent.cache_dir: refusing to remove it: ")
    assert all(home_dir(host.user).is_dir() for host in lab.hosts)


@pytest.fixture
def strict_sshd(lab: LabStatus, tmp_path: Path) -> Iterator[int]:
    """A second sshd on client2 (port 2200) that allows no TCP forwarding and has no SFTP."""
    port = 2200
    lab_config = LabPaths.of(NAME, lab.spec.state_root).sshd_config("client2")
    lines = [line for line in lab_config.read_text().splitlines()
             if not line.startswith(("Port ", "PidFile ", "AllowTcpForwarding ", "Subsystem "))]
    lines += [f"Port {port}", f"PidFile {tmp_path / 'sshd.pid'}", "AllowTcpForwarding no"]
    path = tmp_path / "sshd_config"
    path.write_text("\n".join(lines) + "\n")
    sshd = subprocess.Popen(
        netns(lab, "client2", shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-f", str(path),
              "-E", str(tmp_path / "sshd.log")))
    address = lab_address(lab, "client2")
    try:
        poll_until(lambda: accepts(address, port), 30, "the second sshd to listen")
        yield port
    finally:
        sshd.terminate()
        sshd.wait(30)


def accepts(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
    except OSError:
        return False
    return True


def test_doctor_names_a_host_without_tcp_forwarding_or_sftp(
    lab: LabStatus, tmp_path: Path, strict_sshd: int
) -> None:
    def use_strict_sshd(data: dict[str, Any]) -> None:
        data["hosts"][2]["port"] = strict_sshd

    result = coord("doctor", "-i", edited_inventory(lab, tmp_path, use_strict_sshd),
                   "--accept-new-host-keys")
    assert result.returncode == 1, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if "│" in line and "client2" in line]
    assert len(rows) == 2, result.stdout
    assert "tcp forwarding" in rows[0] and "AllowTcpForwarding" in rows[0]
    assert "sftp" in rows[1] and "Subsystem sftp" in rows[1]
    assert "2 problem(s)" in result.stdout
