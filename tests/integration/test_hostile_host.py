"""Agents on shared or hostile hosts: other local users, shared cache directories, shared homes.

Needs root. One lab (``chost`` on 198.18.148.0/24: a server and one client) for the module,
built with the usual soft limit of 1,024 open files (sshd and every agent inherit it) and always
torn down. "Another local user" is played by the other lab host's Unix user: every namespace
shares the machine's filesystem and /etc/passwd.
"""

from __future__ import annotations

import os
import pwd
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from coordinator.core.errors import BundleError
from coordinator.inventory.loader import load_inventory
from coordinator.inventory.schema import Inventory
from coordinator.lab.api import LabSpec, LabStatus, lab_down, lab_up
from coordinator.remote.agent_link import AgentLink, new_token, parse_ready_line, startup_line
from coordinator.remote.deploy import DeployOptions, agent_command, deploy, host_state_dir
from coordinator.remote.fleet import Fleet
from coordinator.remote.ssh import SSHHost
from tests.helpers import poll_until, wait_for_line, when_lab_is_free

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
NAME = "chost"
SUBNET = "198.18.148.0/24"
USUAL_FILE_LIMIT = 1024
IDLE_CONNECTIONS = 1100
AGENT_MARK = "from agent.__main__ import run"

# Run inside the agent's namespace: opens COUNT idle connections to 127.0.0.1:PORT, says so,
# then reports once at least SHED of them have been closed by the agent, and keeps the rest
# open until its stdin closes.
FLOOD = """
import selectors, socket, sys
port, count, shed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
print("opened", len(socks), flush=True)
selector = selectors.DefaultSelector()
for sock in socks:
    selector.register(sock, selectors.EVENT_READ)
selector.register(sys.stdin, selectors.EVENT_READ)
closed = 0
reported = False
while True:
    for key, _ in selector.select():
        if key.fileobj is sys.stdin:
            sys.exit(0)
        try:
            data = key.fileobj.recv(4096)
        except OSError:
            data = b""
        if not data:
            selector.unregister(key.fileobj)
            key.fileobj.close()
            closed += 1
    if closed >= shed and not reported:
        print("shed", closed, flush=True)
        reported = True
"""


def _ignore(*_: object) -> None:
    pass


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    """The lab, its daemons started with a soft limit of 1,024 open files (a common default;
    this machine's is higher)."""
    path = tmp_path_factory.mktemp("hostile") / "lab.yaml"
    spec = LabSpec(name=NAME, clients=1, subnet=SUBNET)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(USUAL_FILE_LIMIT, hard), hard))
    try:
        status = when_lab_is_free(lambda: lab_up(spec, path))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield status
    finally:
        when_lab_is_free(lambda: lab_down(NAME, spec.state_root))


@pytest.fixture(scope="module")
def inventory(lab: LabStatus) -> Inventory:
    return load_inventory(lab.inventory_path).inventory


def namespace_of(lab: LabStatus, host: str) -> str:
    return next(h.namespace for h in lab.hosts if h.name == host)


def user_of(lab: LabStatus, host: str) -> pwd.struct_passwd:
    return pwd.getpwnam(next(h.user for h in lab.hosts if h.name == host))


def agent_processes(user: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "username", "status"]):
        info = process.info
        if (info["status"] != psutil.STATUS_ZOMBIE and info["username"] == user
                and AGENT_MARK in " ".join(info["cmdline"] or [])):
            found.append(process)
    return found


def coord(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


# --- item 7: a flood of idle connections -----------------------------------------------------


def test_a_flood_of_idle_local_connections_does_not_close_the_agent(
    lab: LabStatus, inventory: Inventory
) -> None:
    host = inventory.host("client1")
    ssh = SSHHost(host, inventory.ssh).connect()
    token = new_token()
    try:
        deployment = deploy(ssh, DeployOptions(), inventory.agent.cache_dir, _ignore)
        state_dir = host_state_dir(inventory.agent.cache_dir, host.name)
        process = ssh.start(agent_command(deployment, ssh.python, 30.0, state_dir),
                            startup_line(token).decode("utf-8"))
        flood: subprocess.Popen[str] | None = None
        try:
            line = process.readline(30)
            assert line is not None, process.stderr()
            ready = parse_ready_line(line, host.name)
            link = AgentLink.connect(host.name, ssh.open_channel(ready.port), token)
            assert link.heartbeat() > 0
            flood = subprocess.Popen(
                ["ip", "netns", "exec", namespace_of(lab, "client1"), sys.executable, "-c",
                 FLOOD, str(ready.port), str(IDLE_CONNECTIONS), "1000"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            wait_for_line(flood.stdout, "opened", 60)
            wait_for_line(flood.stdout, "shed", 60)
            # coord's link survived, and the agent still takes a new authenticated link.
            assert link.heartbeat() > 0
            with AgentLink.connect(host.name, ssh.open_channel(ready.port), token) as second:
                assert second.hello().pid == ready.pid
            link.stop()
            link.close()
        finally:
            if flood is not None:
                flood.kill()
                flood.wait(30)
            process.close()
    finally:
        ssh.close()
    poll_until(lambda: not agent_processes(host.user or ""), 30, "the agent to exit")


# --- item 9: a shared cache directory --------------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A world-writable sticky directory, like /tmp: where a shared cache_dir would live."""
    path = Path(tempfile.mkdtemp(prefix="chost-shared-", dir="/tmp"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def plant_bundle(directory: Path, marker: Path, owner: pwd.struct_passwd) -> None:
    """An agent package that only leaves ``marker`` behind when it is run, owned by ``owner``."""
    package = directory / "agent"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        f"def run(argv):\n    open({str(marker)!r}, 'w').write('ran')\n    raise SystemExit(1)\n"
    )
    (directory / "site").mkdir()
    complete = directory / ".complete"
    complete.write_text("planted\n")
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    complete.chmod(0o666)  # so that the victim may touch it (the cache check marks it used)


def with_cache_dir(inventory: Inventory, cache_dir: str) -> Inventory:
    return inventory.model_copy(
        update={"agent": inventory.agent.model_copy(update={"cache_dir": cache_dir})}
    )


def test_a_cache_dir_planted_by_another_user_is_refused(
    lab: LabStatus, inventory: Inventory, shared_dir: Path
) -> None:
    other = user_of(lab, "server")
    cache = shared_dir / "coord"
    built = Fleet(inventory, [inventory.host("client1")])
    with built:  # learn the bundle's hash, as any local user can from an agent's argv
        bundle_hash = built.sessions["client1"].deployment.bundle.hash  # type: ignore[union-attr]
    marker = shared_dir / "planted-code-ran"
    plant_bundle(cache / "bundles" / bundle_hash, marker, other)
    for path in (cache, cache / "bundles"):
        os.chown(path, other.pw_uid, other.pw_gid)
    hostile = with_cache_dir(inventory, str(cache))
    with Fleet(hostile, [hostile.host("client1")]) as fleet:
        failed = fleet.start_result.failed
    assert not marker.exists(), "the planted bundle was run"
    assert "client1" in failed, fleet.start_result
    message = str(failed["client1"].error)
    assert message.startswith("client1: ") and str(cache) in message, message
    assert other.pw_name in message, message
    assert "\n" not in message and "owned by" in message, message


def test_a_bundle_dir_writable_by_others_is_refused(
    lab: LabStatus, inventory: Inventory, shared_dir: Path
) -> None:
    me = user_of(lab, "client1")
    cache = shared_dir / "mine"
    cache.mkdir(mode=0o700)
    os.chown(cache, me.pw_uid, me.pw_gid)
    configured = with_cache_dir(inventory, str(cache))
    with Fleet(configured, [configured.host("client1")]) as fleet:
        assert fleet.start_result.ok, fleet.start_result.failed
        remote_dir = Path(fleet.sessions["client1"].deployment.result.remote_dir)
    (remote_dir / "site").chmod(0o777)
    ssh = SSHHost(configured.host("client1"), configured.ssh).connect()
    try:
        with pytest.raises(BundleError) as refused:
            deploy(ssh, DeployOptions(), str(cache), _ignore)
    finally:
        ssh.close()
    message = str(refused.value)
    assert message.startswith("client1: ") and str(remote_dir / "site") in message, message
    assert "writable by others" in message, message


def test_a_cached_bundle_whose_content_changed_is_replaced_not_run(
    lab: LabStatus, inventory: Inventory, shared_dir: Path
) -> None:
    me = user_of(lab, "client1")
    cache = shared_dir / "damaged"
    cache.mkdir(mode=0o700)
    os.chown(cache, me.pw_uid, me.pw_gid)
    configured = with_cache_dir(inventory, str(cache))
    with Fleet(configured, [configured.host("client1")]) as fleet:
        assert fleet.start_result.ok, fleet.start_result.failed
        remote_dir = Path(fleet.sessions["client1"].deployment.result.remote_dir)
    marker = shared_dir / "changed-code-ran"
    main = remote_dir / "agent" / "__main__.py"
    main.write_text(f"def run(argv):\n    open({str(marker)!r}, 'w').write('ran')\n")
    with Fleet(configured, [configured.host("client1")]) as fleet:
        assert fleet.start_result.ok, fleet.start_result.failed
        assert not fleet.sessions["client1"].deployment.result.cached
    assert not marker.exists(), "a bundle that no longer matches its hash was run"


# --- item 10: one home shared by several hosts -----------------------------------------------


def test_hosts_sharing_a_home_keep_their_own_pid_file_and_log(
    lab: LabStatus, inventory: Inventory, tmp_path: Path
) -> None:
    """Two inventory hosts reach the same account (so the same home): like NFS homes."""
    data = yaml.safe_load(lab.inventory_path.read_text())
    original = next(h for h in data["hosts"] if h["name"] == "client1")
    original["shares_machine"] = True  # one address: coord refuses it unless both say so
    twin = dict(original, name="client1b")
    data["hosts"].append(twin)
    path = tmp_path / "shared-home.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    shared = load_inventory(path).inventory
    user = twin["user"]
    with Fleet(shared, [shared.host("client1"), shared.host("client1b")]) as fleet:
        assert fleet.start_result.ok, fleet.start_result.failed
        pids = {name: session.info.pid for name, session in fleet.sessions.items()}
        assert len(set(pids.values())) == 2
        # Another coord process stops the agents it did not start.
        stopped = coord("agents", "stop", "-i", str(path), "--hosts", "client1,client1b")
        assert stopped.returncode == 0, stopped.stderr
        poll_until(lambda: not agent_processes(user), 30, "both agents to stop")
        logs = coord("agents", "logs", "-i", str(path), "--hosts", "client1,client1b",
                     "-n", "1000")
    assert logs.returncode == 0, logs.stderr
    sections = split_logs(logs.stdout, ["client1", "client1b"])
    for name, pid in pids.items():
        other = pids["client1b" if name == "client1" else "client1"]
        assert f" {pid} INFO" in sections[name], (name, sections[name])
        assert f" {other} INFO" not in sections[name], (name, sections[name])


def split_logs(output: str, hosts: list[str]) -> dict[str, str]:
    """`coord agents logs` output, cut into each host's part (it prints a header per host)."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in output.splitlines():
        header = line.strip("=─- :")
        if header in hosts:
            current = header
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    assert set(sections) == set(hosts), output
    return {name: "\n".join(lines) for name, lines in sections.items()}
