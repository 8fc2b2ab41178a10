"""Agents on a real lab: deploy, status, security of the link, host keys, and clean-up.

Needs root. One lab (``cfleet`` on 198.18.120.0/24, two clients and a server) for the module,
always torn down. The coordinator runs as a real `coord` process where its death or its
output matters (kill -9, exit statuses), in-process otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from coordinator.inventory.loader import load_inventory
from coordinator.lab.api import LabSpec, LabStatus, lab_down, lab_up
from coordinator.remote.deploy import DeployOptions
from coordinator.remote.fleet import Fleet
from coordinator.remote.ssh import SSHHost
from tests.helpers import poll_until, wait_for_line

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
NAME = "cfleet"
SUBNET = "198.18.120.0/24"
UNUSED_ADDRESS = "198.18.120.99"
WATCHDOG = 3.0
AGENT_MARK = "from agent.__main__ import run"


def agent_processes(lab: LabStatus) -> list[psutil.Process]:
    """Live agent processes of this lab's users (namespaces share the PID namespace)."""
    users = {host.user for host in lab.hosts}
    found = []
    for process in psutil.process_iter(["cmdline", "username", "status"]):
        info = process.info
        if (info["status"] != psutil.STATUS_ZOMBIE and info["username"] in users
                and AGENT_MARK in " ".join(info["cmdline"] or [])):
            found.append(process)
    return found


def coord(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def start_coord(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "coordinator.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    lab_down(NAME)
    path = tmp_path_factory.mktemp("fleet") / "lab.yaml"
    try:
        yield lab_up(LabSpec(name=NAME, clients=2, subnet=SUBNET), path)
    finally:
        lab_down(NAME)


@pytest.fixture(scope="module")
def inventory_path(lab: LabStatus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's inventory with a short watchdog, so loss tests finish quickly."""
    data = yaml.safe_load(lab.inventory_path.read_text())
    data["agent"] = {"watchdog": f"{WATCHDOG:g}s"}
    path = tmp_path_factory.mktemp("fleet") / "hosts.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_variant(base: Path, target: Path, change: Callable[[dict[str, object]], None]) -> Path:
    data = yaml.safe_load(base.read_text())
    change(data)
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def test_deploy_twice_the_second_uploads_nothing(inventory_path: Path) -> None:
    inventory = load_inventory(inventory_path).inventory
    with Fleet(inventory) as fleet:
        assert fleet.start_result.ok, fleet.start_result.failed
        assert set(fleet.sessions) == {"server", "client1", "client2"}
    with Fleet(inventory) as fleet:
        assert fleet.start_result.ok, fleet.start_result.failed
        deployments = [s.deployment for s in fleet.sessions.values()]
        results = [deployment.result for deployment in deployments if deployment is not None]
        assert len(results) == len(deployments)  # the SSH transport ships a bundle to each
        assert all(result.cached for result in results), results
        assert sum(result.bytes_uploaded for result in results) == 0
        connections = [s.connection for s in fleet.sessions.values()]
        assert all(isinstance(connection, SSHHost) for connection in connections)
        assert sum(c.bytes_uploaded for c in connections if isinstance(c, SSHHost)) == 0


def test_agents_status_lists_every_agent_and_leaves_none(lab: LabStatus,
                                                         inventory_path: Path) -> None:
    result = coord("agents", "status", "-i", str(inventory_path))
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "3.11" in line]
    assert sorted(row.split("│")[1].strip() for row in rows) == ["client1", "client2", "server"]
    assert "3 agent(s)" in result.stdout
    assert "stopped 3 agent(s)" in result.stderr
    assert agent_processes(lab) == []


def test_agent_listens_on_loopback_only_and_demands_the_token(
    lab: LabStatus, inventory_path: Path
) -> None:
    inventory = load_inventory(inventory_path).inventory
    with Fleet(inventory, [inventory.host("server")]) as fleet:
        session = fleet.sessions["server"]
        namespace = next(h.namespace for h in lab.hosts if h.name == "server")
        listening = listening_sockets(namespace, session.info.pid)
        assert len(listening) == 1, listening
        address, port = listening[0]
        assert address == "127.0.0.1"
        client_ns = next(h.namespace for h in lab.hosts if h.name == "client1")
        server_address = inventory.host("server").address
        probe = (
            "import socket,sys\n"
            "s=socket.socket(); s.settimeout(3)\n"
            "try:\n"
            f"    s.connect(({server_address!r}, {port}))\n"
            "except OSError as e: print('refused', e.errno)\n"
            "else: print('connected')\n"
        )
        remote = subprocess.run(["ip", "netns", "exec", client_ns, sys.executable, "-c", probe],
                                capture_output=True, text=True, timeout=30, check=True)
        assert remote.stdout.startswith("refused"), remote.stdout
        no_token = (
            "import socket\n"
            f"s=socket.create_connection(('127.0.0.1', {port}), timeout=10)\n"
            "s.sendall(b'{\"token\": \"' + b'0'*64 + b'\"}\\n')\n"
            "data=s.recv(4096); rest=s.recv(4096)\n"
            "print(repr(data)); print('closed' if rest == b'' else 'open')\n"
        )
        local = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c",
                                no_token], capture_output=True, text=True, timeout=30,
                               check=True)
        assert "refused" in local.stdout
        assert local.stdout.strip().endswith("closed")
        assert session.link.heartbeat() > 0  # the real link is unaffected


def listening_sockets(namespace: str, pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on, seen inside ``namespace``."""
    table = subprocess.run(["ip", "netns", "exec", namespace, "ss", "-Hltnp"],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    found = []
    for line in table.splitlines():
        if f"pid={pid}," in line:
            local = line.split()[3]
            address, _, port = local.rpartition(":")
            found.append((address, int(port)))
    return found


def test_clock_offsets_between_namespaces_are_zero_within_uncertainty(
    inventory_path: Path,
) -> None:
    inventory = load_inventory(inventory_path).inventory
    with Fleet(inventory) as fleet:
        for name, session in fleet.sessions.items():
            clock = session.clock
            # One machine, one clock: the true offset is 0. Allow 50 µs for the agent's
            # clock read not sitting exactly mid round trip (it is one kernel clock).
            assert abs(clock.offset_ns) <= clock.uncertainty_ns + 50_000, (name, clock)
            assert clock.samples >= 8


def test_unknown_host_key_refused_by_default_and_accepted_on_request(
    inventory_path: Path, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")

    def empty_known_hosts(data: dict[str, object]) -> None:
        ssh = data["ssh"]
        assert isinstance(ssh, dict)
        ssh["known_hosts"] = str(known_hosts)

    path = write_variant(inventory_path, tmp_path / "fresh.yaml", empty_known_hosts)
    refused = coord("deploy", "-i", str(path), "--hosts", "client1")
    assert refused.returncode == 1
    assert "unknown host key" in refused.stderr
    assert "accept-new" in refused.stderr
    assert "Traceback" not in refused.stderr
    accepted = coord("deploy", "-i", str(path), "--hosts", "client1", "--accept-new-host-keys")
    assert accepted.returncode == 0, accepted.stderr
    assert "ssh-ed25519" in known_hosts.read_text()
    again = coord("deploy", "-i", str(path), "--hosts", "client1")
    assert again.returncode == 0, again.stderr


def test_unreachable_hosts_fail_by_name_within_the_timeout_others_succeed(
    inventory_path: Path, tmp_path: Path
) -> None:
    def add_bad_hosts(data: dict[str, object]) -> None:
        hosts = data["hosts"]
        assert isinstance(hosts, list)
        template = dict(hosts[1])
        hosts.append({**template, "name": "ghost", "address": UNUSED_ADDRESS})
        # A closed port on client1's own machine: two hosts at one address, said so.
        hosts[1] = {**template, "shares_machine": True}
        hosts.append({**template, "name": "closed", "port": 2, "shares_machine": True})
        ssh = data["ssh"]
        assert isinstance(ssh, dict)
        ssh["connect_timeout"] = "2s"

    path = write_variant(inventory_path, tmp_path / "bad.yaml", add_bad_hosts)
    started = time.monotonic()
    result = coord("deploy", "-i", str(path))
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "ghost" in result.stderr and UNUSED_ADDRESS in result.stderr
    assert "closed" in result.stderr
    assert "Traceback" not in result.stderr
    for name in ("server", "client1", "client2"):
        assert f"│ {name} " in result.stdout, result.stdout
    assert elapsed < 60, elapsed  # a bound on hanging, not a speed test


def test_kill_9_of_the_coordinator_leaves_no_agent(lab: LabStatus,
                                                   inventory_path: Path) -> None:
    holder = start_coord("deploy", "-i", str(inventory_path), "--hold")
    try:
        wait_for_line(holder.stderr, "holding 3 agent(s)", timeout=60)
        assert len(agent_processes(lab)) == 3
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        poll_until(lambda: agent_processes(lab) == [], WATCHDOG + 5, "agents to exit")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def test_agents_stop_stops_a_held_session_at_once(lab: LabStatus,
                                                  inventory_path: Path) -> None:
    holder = start_coord("deploy", "-i", str(inventory_path), "--hold")
    try:
        wait_for_line(holder.stderr, "holding 3 agent(s)", timeout=60)
        stopped = coord("agents", "stop", "-i", str(inventory_path))
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.count("stopped agent pid") == 3, stopped.stdout
        assert agent_processes(lab) == []
        lines = wait_for_line(holder.stderr, "agent lost", timeout=30)
        assert any("agent lost" in line for line in lines)
        again = coord("agents", "stop", "-i", str(inventory_path))
        assert again.stdout.count("no agent running") == 3, again.stdout
    finally:
        holder.send_signal(signal.SIGINT)
        holder.wait(30)
    assert agent_processes(lab) == []


def test_ctrl_c_stops_every_agent_and_says_so(lab: LabStatus, inventory_path: Path) -> None:
    holder = start_coord("deploy", "-i", str(inventory_path), "--hold")
    wait_for_line(holder.stderr, "holding 3 agent(s)", timeout=60)
    holder.send_signal(signal.SIGINT)
    _, err = holder.communicate(timeout=60)
    assert holder.returncode == 130
    assert "stopped 3 agent(s)" in err
    assert "Traceback" not in err
    assert agent_processes(lab) == []


def test_agents_logs_show_each_host_log(inventory_path: Path) -> None:
    result = coord("agents", "logs", "-i", str(inventory_path), "--lines", "5")
    assert result.returncode == 0, result.stderr
    for name in ("server", "client1", "client2"):
        assert name in result.stdout
    assert "agent exits" in result.stdout


def test_unknown_host_selection_is_a_usage_error(inventory_path: Path) -> None:
    result = coord("agents", "status", "-i", str(inventory_path), "--hosts", "nope")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("--hosts: no host named 'nope'")


def test_deploy_options_can_force_accept_new(inventory_path: Path) -> None:
    inventory = load_inventory(inventory_path).inventory
    options = DeployOptions(accept_new_host_keys=True)
    with Fleet(inventory, [inventory.host("client2")], options) as fleet:
        assert fleet.start_result.ok
        assert fleet.sessions["client2"].info.python.startswith("3.")
