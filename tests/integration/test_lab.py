"""The lab, built for real: namespaces, sshd, Redis, cgroups, then removed without a trace.

Needs root. One lab (``ctest`` on 198.18.100.0/24, so a developer's ``coord`` lab is left
alone) is built once for the module and always torn down; tests that need a lab of their own
use other names and subnets (198.18.101-104.0/24). The last test of the file tears the shared
lab down itself and checks that nothing is left.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
import yaml

from coordinator.core.errors import LabError
from coordinator.inventory.loader import load_inventory
from coordinator.lab import build as lab_build
from coordinator.lab import cgroups as lab_cgroups
from coordinator.lab import processes as lab_processes
from coordinator.lab import system as lab_sys
from coordinator.lab.api import LabSpec, LabStatus, lab_down, lab_status, lab_up
from coordinator.lab.plan import DEFAULT_STATE_ROOT, LabPaths

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or os.geteuid() != 0,
        reason="the lab needs Linux and root",
    ),
]

NAME = "ctest"
SUBNET = "198.18.100.0/24"
CLIENT_CPU = 0.2
STATE_ROOT = DEFAULT_STATE_ROOT
SSH_OPTIONS = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]


def run(*argv: str, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=check,
                          env=None if env is None else {**os.environ, **env})


def ssh(
    status: LabStatus, host_name: str, command: str, known_hosts: Path | None = None
) -> subprocess.CompletedProcess[str]:
    host = next(host for host in status.hosts if host.name == host_name)
    return run(
        "ssh",
        *SSH_OPTIONS,
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts or status.known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=10",
        "-i",
        str(host.key_file),
        f"{host.user}@{host.address}",
        command,
        check=False,
    )


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab") / "hosts.yaml"


@pytest.fixture(scope="module")
def lab(inventory: Path) -> Iterator[LabStatus]:
    lab_down(NAME, STATE_ROOT)  # a healthy lab left by an interrupted run would be reused
    spec = LabSpec(name=NAME, clients=2, subnet=SUBNET, client_cpu=CLIENT_CPU)
    try:
        yield lab_up(spec, inventory)
    finally:
        lab_down(NAME, STATE_ROOT)


def assert_no_traces(name: str, inventories: list[Path], pids: list[int]) -> None:
    """Nothing of the lab ``name`` is left, checked with the system's own tools."""
    namespaces = run("ip", "netns", "list").stdout.split()
    assert not [ns for ns in namespaces if ns.startswith(f"{name}-")]
    links = [
        line.split(":")[1].strip().split("@")[0]
        for line in run("ip", "-o", "link", "show").stdout.splitlines()
    ]
    assert not [link for link in links if link.startswith(f"{name}-")]
    assert not [user.pw_name for user in pwd.getpwall() if user.pw_name.startswith(f"{name}-")]
    assert not [group.gr_name for group in grp.getgrall() if group.gr_name.startswith(f"{name}-")]
    assert not list(Path("/home").glob(f"{name}-*"))
    assert not Path(f"/sys/fs/cgroup/cpu/{name}-lab").exists()
    assert not Path(f"/sys/fs/cgroup/{name}-lab").exists()
    lab_dir = LabPaths.of(name, STATE_ROOT).root
    assert not lab_dir.exists()
    for path in inventories:
        assert not path.exists(), path
    assert not [pid for pid in pids if lab_processes.is_alive(pid)]
    daemons = run("ps", "-eo", "pid=,stat=,args=").stdout.splitlines()
    assert not [line for line in daemons if str(lab_dir) in line and " Z" not in line]
    assert lab_status(name, STATE_ROOT) is None


def lab_pids(status: LabStatus) -> dict[str, int]:
    paths = LabPaths.of(status.spec.name, status.spec.state_root)
    pids = {host.name: lab_sys.read_pidfile(paths.sshd_pidfile(host.name)) for host in status.hosts}
    pids["redis"] = lab_sys.read_pidfile(paths.redis_pidfile)
    assert all(pids.values()), pids
    return {name: pid for name, pid in pids.items() if pid is not None}


def test_up_builds_a_healthy_lab_and_its_inventory(lab: LabStatus, inventory: Path) -> None:
    assert lab.healthy, lab.problems
    assert [(host.name, host.role, host.address) for host in lab.hosts] == [
        ("server", "server", "198.18.100.10"),
        ("client1", "client", "198.18.100.11"),
        ("client2", "client", "198.18.100.12"),
    ]
    assert lab.inventory_path == inventory
    assert all(count >= 1 for count in lab.processes.values()), lab.processes
    assert all(lab.sshd.values()) and lab.redis
    loaded = load_inventory(inventory)  # the inventory is valid for `coord run`
    assert loaded.warnings == []
    assert [host.user for host in loaded.inventory.hosts] == [host.user for host in lab.hosts]
    document = yaml.safe_load(inventory.read_text())
    assert document["ssh"] == {
        "known_hosts": str(lab.known_hosts),
        "host_key_policy": "strict",
        "connect_timeout": "10s",
    }
    assert document["hosts"][1]["labels"] == {"cpu_quota": "0.2"}
    assert "labels" not in document["hosts"][0]
    assert document["servers"] == [{
        "name": "redis", "host": "server", "port": 6379,
        "password_file": str(LabPaths.of(NAME, STATE_ROOT).redis_password),
    }]


def test_every_host_accepts_its_key_with_strict_host_checking(lab: LabStatus) -> None:
    for host in lab.hosts:
        result = ssh(lab, host.name, "id -un")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == host.user
    refused = ssh(lab, "server", "id -un", known_hosts=Path("/dev/null"))
    assert refused.returncode == 255
    assert "Host key verification failed" in refused.stderr


def test_paramiko_with_reject_policy_and_the_lab_known_hosts(lab: LabStatus) -> None:
    for host in lab.hosts:
        client = paramiko.SSHClient()
        client.load_host_keys(str(lab.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                host.address,
                username=host.user,
                key_filename=str(host.key_file),
                look_for_keys=False,
                allow_agent=False,
                timeout=10,
            )
            _, stdout, _ = client.exec_command("id -un", timeout=10)
            assert stdout.read().decode().strip() == host.user
        finally:
            client.close()


def test_redis_answers_on_the_lab_address_only(lab: LabStatus) -> None:
    server = lab.hosts[0]
    password = LabPaths.of(NAME, STATE_ROOT).redis_password.read_text().strip()
    for client in lab.hosts[1:]:
        pong = run(
            "ip", "netns", "exec", client.namespace, "redis-cli", "-h", server.address, "PING",
            env={"REDISCLI_AUTH": password},
        )
        assert pong.stdout.strip() == "PONG"
    local = run(
        "ip", "netns", "exec", server.namespace, "redis-cli", "-h", "127.0.0.1", "PING",
        check=False, env={"REDISCLI_AUTH": password},
    )
    assert "PONG" not in local.stdout
    listening = run("ip", "netns", "exec", server.namespace, "ss", "-Hltn", "sport = :6379")
    local_addresses = [line.split()[3] for line in listening.stdout.splitlines()]
    assert local_addresses == [f"{server.address}:6379"]


def test_a_second_up_changes_nothing(lab: LabStatus, inventory: Path) -> None:
    paths = LabPaths.of(NAME, STATE_ROOT)

    def snapshot() -> dict[str, object]:
        files = [*paths.root.rglob("*"), inventory]
        return {
            "pids": lab_pids(lab),
            "files": {str(path): (path.stat().st_mtime_ns, path.stat().st_ino) for path in files},
            "namespaces": run("ip", "netns", "list").stdout,
            "users": sorted((u.pw_name, u.pw_uid) for u in pwd.getpwall() if "ctest" in u.pw_name),
            # the sshd listeners stay in their cgroups (sessions of earlier tests may linger)
            "cgroups": {
                host: lab_pids(lab)[host] in lab_cgroups.cgroup_pids(path)
                for host, path in lab.cgroups.items()
            },
        }

    before = snapshot()
    again = lab_up(lab.spec, inventory)
    assert snapshot() == before
    assert again.healthy and again.hosts == lab.hosts


def test_client_cpu_throttles_what_runs_over_ssh(lab: LabStatus) -> None:
    program = (
        "import time\n"
        "start, cpu = time.monotonic(), time.process_time()\n"
        "while time.monotonic() - start < 1.0: pass\n"
        "print((time.process_time() - cpu) / (time.monotonic() - start))\n"
    )
    cgroup = lab.cgroups["client1"]
    result = ssh(lab, "client1", f"python3 -c {shlex.quote(program)}")
    assert result.returncode == 0, result.stderr
    ratio = float(result.stdout.strip())
    assert ratio <= 0.35, f"CPU time / wall time was {ratio:.2f} under a 0.2 quota"
    stat = dict(line.split() for line in (cgroup / "cpu.stat").read_text().splitlines())
    assert int(stat["nr_throttled"]) > 0


def test_a_lab_of_the_same_name_and_another_spec_is_refused(
    lab: LabStatus, inventory: Path
) -> None:
    other = LabSpec(name=NAME, clients=3, subnet=SUBNET, client_cpu=CLIENT_CPU)
    with pytest.raises(LabError) as raised:
        lab_up(other, inventory)
    message = str(raised.value)
    assert "\n" not in message
    assert "a lab named ctest is already up with 2 clients" in message
    assert "coord lab down" in message
    status = lab_status(NAME, STATE_ROOT)
    assert status is not None and status.healthy and len(status.hosts) == 3


def test_an_address_clash_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    name, dummy = "ctclash", "ctclash0"
    if run("ip", "link", "add", dummy, "type", "dummy", check=False).returncode != 0:
        # a kernel without the dummy driver: one end of a veth pair holds an address as well
        run("ip", "link", "add", dummy, "type", "veth", "peer", "name", "ctclash1")
    try:
        run("ip", "addr", "add", "198.18.101.77/24", "dev", dummy)
        inventory = tmp_path / "hosts.yaml"
        with pytest.raises(LabError) as raised:
            lab_up(LabSpec(name=name, clients=1, subnet="198.18.101.0/24"), inventory)
        message = str(raised.value)
        assert "\n" not in message
        assert dummy in message and "198.18.101.77/24" in message
        assert_no_traces(name, [inventory], [])
    finally:
        run("ip", "link", "del", dummy)


def test_a_foreign_inventory_file_is_never_overwritten(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("hosts: []\n")
    with pytest.raises(LabError, match="was not written by `coord lab up`"):
        lab_up(LabSpec(name="ctforgn", clients=1, subnet="198.18.104.0/24"), inventory)
    assert inventory.read_text() == "hosts: []\n"
    assert_no_traces("ctforgn", [], [])


def test_a_failure_midway_removes_what_was_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_redis(self: lab_build.Builder, server: object) -> None:
        self.step = "redis-server on server"
        raise lab_sys.CommandFailed(["redis-server"], 1, "simulated failure\nlast line")

    monkeypatch.setattr(lab_build.Builder, "_redis", broken_redis)
    inventory, name = tmp_path / "hosts.yaml", "ctfail"
    with pytest.raises(LabError) as raised:
        lab_up(LabSpec(name=name, clients=1, subnet="198.18.102.0/24"), inventory)
    message = str(raised.value)
    assert "\n" not in message
    assert "redis-server on server" in message and "last line" in message
    assert_no_traces(name, [inventory], [])


def test_an_unhealthy_lab_is_rebuilt_and_down_works_without_state(tmp_path: Path) -> None:
    name, inventory = "ctcrash", tmp_path / "hosts.yaml"
    spec = LabSpec(name=name, clients=1, subnet="198.18.103.0/24")
    try:
        first = lab_up(spec, inventory)
        pids = lab_pids(first)
        os.kill(pids["redis"], signal.SIGKILL)
        lab_sys.wait_until(
            lambda: not lab_processes.is_alive(pids["redis"]), timeout=5, what="redis"
        )
        broken = lab_status(name, STATE_ROOT)
        assert broken is not None and not broken.healthy
        assert "redis-server does not answer PING" in broken.problems
        lines: list[str] = []
        rebuilt = lab_up(spec, inventory, report=lines.append)
        assert rebuilt.healthy, rebuilt.problems
        assert any("rebuilding" in line for line in lines)
        new_pids = lab_pids(rebuilt)
        assert new_pids["redis"] != pids["redis"]
        LabPaths.of(name, STATE_ROOT).state_file.unlink()  # as if the state file were lost
        removed = lab_down(name, STATE_ROOT)
        assert "namespace ctcrash-server" in removed and "user ctcrash-client1" in removed
        assert_no_traces(name, [], list(new_pids.values()))
        # the inventory is only known from the state file, which was lost: it stays, harmlessly
        inventory.unlink()
    finally:
        lab_down(name, STATE_ROOT)


def test_down_removes_every_trace_and_a_second_down_is_a_no_op(
    lab: LabStatus, inventory: Path
) -> None:
    """Runs last: it takes the shared lab down."""
    pids = [*lab_pids(lab).values()]
    ssh(lab, "client1", "sleep 300 >/dev/null 2>&1 &")  # a process left behind over SSH
    removed = lab_down(NAME, STATE_ROOT)
    for expected in (
        "namespace ctest-server",
        "namespace ctest-client2",
        "bridge ctest-br",
        "veth ctest-c1",
        "user ctest-client1",
        "home /home/ctest-client1",
        f"inventory {inventory}",
        f"state directory {LabPaths.of(NAME, STATE_ROOT).root}",
    ):
        assert expected in removed
    assert any(line.startswith("cgroup ") for line in removed)
    assert any(line.endswith("(sleep)") for line in removed), removed
    assert_no_traces(NAME, [inventory], pids)
    assert lab_down(NAME, STATE_ROOT) == []
