"""remote.ssh against real sshd: host keys, timeouts, quoting, uploads, processes, tunnels.

The lab ``cssh`` (198.18.110.0/24: a server and one client) is built once for the module and
always torn down. Traffic goes only to that lab's addresses.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest

from coordinator.core.errors import (
    AgentError,
    HostKeyRejected,
    HostUnreachable,
    RemoteCommandFailed,
    SSHAuthFailed,
)
from coordinator.inventory.loader import load_inventory
from coordinator.inventory.schema import Host, Inventory, SSHDefaults
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.remote.handshake import HandshakeLimiter
from coordinator.remote.host_keys import known_hosts_name
from coordinator.remote.ssh import SSHHost
from tests.helpers import module_lab, poll_until

NAME = "cssh"
SUBNET = "198.18.110.0/24"
UNUSED_ADDRESS = "198.18.110.99"
"""Inside the lab's subnet, on its bridge, but no host has it."""
CLOSED_PORT = 2
SHORT_TIMEOUT = 2.0
MARGIN = 1.5
"""Slack allowed past a connect timeout (thread start-up, a slow CI machine): a bound only."""

needs_lab = [
    pytest.mark.lab,
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or os.geteuid() != 0,
        reason="the lab needs Linux and root",
    ),
]


# --- no lab needed ----------------------------------------------------------------------------


def test_handshake_limiter_bounds_concurrent_slots() -> None:
    limiter = HandshakeLimiter(3)
    release = threading.Event()
    lock = threading.Lock()
    inside = 0
    most = 0

    def hold() -> None:
        nonlocal inside, most
        with limiter.slot() as acquired:
            assert acquired
            with lock:
                inside += 1
                most = max(most, inside)
            release.wait(30)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for thread in threads:
        thread.start()
    poll_until(lambda: inside == 3, 10, "three slot holders")
    with limiter.slot(timeout=0) as acquired:
        assert not acquired
    release.set()
    for thread in threads:
        thread.join(30)
    assert most == 3
    with limiter.slot(timeout=0) as acquired:
        assert acquired
    with pytest.raises(ValueError, match="at least 1"):
        HandshakeLimiter(0)


def test_known_hosts_names_follow_openssh() -> None:
    assert known_hosts_name("198.18.0.10", 22) == "198.18.0.10"
    assert known_hosts_name("198.18.0.10", 2222) == "[198.18.0.10]:2222"


# --- the lab ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    spec = LabSpec(name=NAME, clients=1, subnet=SUBNET)
    yield from module_lab(spec, tmp_path_factory.mktemp(NAME))


@pytest.fixture(scope="module")
def inventory(lab: LabStatus) -> Inventory:
    return load_inventory(lab.inventory_path).inventory


@pytest.fixture(scope="module")
def server(inventory: Inventory) -> Iterator[SSHHost]:
    with SSHHost(inventory.host("server"), inventory.ssh) as host:
        yield host


def lab_host_key(lab: LabStatus, address: str) -> paramiko.PKey:
    keys = paramiko.HostKeys(str(lab.known_hosts))
    entry = keys.lookup(address)
    assert entry is not None, f"{address} is not in {lab.known_hosts}"
    return entry["ssh-ed25519"]


def defaults(inventory: Inventory, **changes: object) -> SSHDefaults:
    return inventory.ssh.model_copy(update=changes)


@pytest.mark.usefixtures("lab")
class TestHostKeys:
    pytestmark = needs_lab

    def test_strict_refuses_an_unknown_key(
        self, lab: LabStatus, inventory: Inventory, tmp_path: Path
    ) -> None:
        known_hosts = tmp_path / "known_hosts"
        host = inventory.host("server")
        with pytest.raises(HostKeyRejected) as caught:
            SSHHost(host, defaults(inventory, known_hosts=str(known_hosts))).connect()
        key = lab_host_key(lab, host.address)
        assert str(caught.value) == (
            f"server: unknown host key for {host.address} (ssh-ed25519 {key.fingerprint}); "
            "to accept it set `ssh.host_key_policy: accept-new` in the inventory or pass "
            "--accept-new-host-keys"
        )
        assert not known_hosts.exists()

    def test_accept_new_records_the_key_once(
        self, lab: LabStatus, inventory: Inventory, tmp_path: Path
    ) -> None:
        known_hosts = tmp_path / "ssh" / "known_hosts"
        host = inventory.host("server")
        accept = defaults(inventory, known_hosts=str(known_hosts), host_key_policy="accept-new")
        with SSHHost(host, accept) as ssh:
            assert ssh.run(["true"]) == ("", "")
        key = lab_host_key(lab, host.address)
        assert known_hosts.read_text() == f"{host.address} ssh-ed25519 {key.get_base64()}\n"
        assert oct(known_hosts.stat().st_mode & 0o777) == "0o600"
        with SSHHost(host, accept):
            pass
        strict = defaults(inventory, known_hosts=str(known_hosts))
        with SSHHost(host, strict) as ssh:
            assert ssh.connected
        assert len(known_hosts.read_text().splitlines()) == 1

    @pytest.mark.parametrize("policy", ["strict", "accept-new"])
    def test_a_changed_key_is_always_refused(
        self, lab: LabStatus, inventory: Inventory, tmp_path: Path, policy: str
    ) -> None:
        server, client = inventory.host("server"), inventory.host("client1")
        wrong = lab_host_key(lab, client.address)
        known_hosts = tmp_path / "known_hosts"
        line = f"{server.address} ssh-ed25519 {wrong.get_base64()}\n"
        known_hosts.write_text(line)
        settings = defaults(inventory, known_hosts=str(known_hosts), host_key_policy=policy)
        with pytest.raises(HostKeyRejected) as caught:
            SSHHost(server, settings).connect()
        message = str(caught.value)
        assert message.startswith(f"server: host key for {server.address} has CHANGED")
        assert wrong.fingerprint in message
        assert lab_host_key(lab, server.address).fingerprint in message
        assert "ssh-keygen -R" in message
        assert known_hosts.read_text() == line


@pytest.mark.usefixtures("lab")
class TestConnectFailures:
    pytestmark = needs_lab

    def test_an_unused_address_fails_within_the_timeout(self, inventory: Inventory) -> None:
        host = inventory.host("client1").model_copy(update={"address": UNUSED_ADDRESS})
        started = time.monotonic()
        with pytest.raises(HostUnreachable) as caught:
            SSHHost(host, defaults(inventory, connect_timeout=SHORT_TIMEOUT)).connect()
        elapsed = time.monotonic() - started
        assert elapsed < SHORT_TIMEOUT + MARGIN
        assert str(caught.value).startswith(
            f"client1: cannot connect to {UNUSED_ADDRESS}:22 within 2s: "
        )

    def test_a_closed_port_fails_within_the_timeout(self, inventory: Inventory) -> None:
        host = inventory.host("server").model_copy(update={"port": CLOSED_PORT})
        started = time.monotonic()
        with pytest.raises(HostUnreachable) as caught:
            SSHHost(host, defaults(inventory, connect_timeout=SHORT_TIMEOUT)).connect()
        assert time.monotonic() - started < SHORT_TIMEOUT + MARGIN
        assert str(caught.value) == (
            f"server: cannot connect to {host.address}:{CLOSED_PORT} within 2s: connection refused"
        )

    def test_a_key_the_host_does_not_know_is_an_auth_failure(self, inventory: Inventory) -> None:
        server, client = inventory.host("server"), inventory.host("client1")
        host = server.model_copy(update={"key_file": client.key_file})
        with pytest.raises(SSHAuthFailed) as caught:
            SSHHost(host, inventory.ssh).connect()
        assert str(caught.value).startswith(
            f"server: {server.address}:22 refused user {server.user} with key {client.key_file}"
        )

    def test_a_missing_key_file_is_named(self, inventory: Inventory, tmp_path: Path) -> None:
        host = inventory.host("server").model_copy(update={"key_file": str(tmp_path / "nokey")})
        with pytest.raises(SSHAuthFailed, match="nokey does not exist"):
            SSHHost(host, inventory.ssh).connect()

    def test_the_operators_ssh_config_is_not_read(
        self, inventory: Inventory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        host = inventory.host("server")
        ssh_dir = tmp_path / ".ssh"
        ssh_dir.mkdir()
        (ssh_dir / "config").write_text(
            f"Host {host.address}\n  Hostname {UNUSED_ADDRESS}\n  Port {CLOSED_PORT}\n"
            "  User nobody\n"
        )
        (tmp_path / ".fabric.yaml").write_text("port: 2\nuser: nobody\n")
        monkeypatch.setenv("HOME", str(tmp_path))
        with SSHHost(host, inventory.ssh) as ssh:
            assert ssh.run(["id", "-un"])[0].strip() == host.user

    def test_many_handshakes_at_once_all_connect(self, inventory: Inventory) -> None:
        """More handshakes than sshd's MaxStartups (10) admits: drops are retried."""
        host = inventory.host("client1")
        limiter = HandshakeLimiter(24)
        hosts = [SSHHost(host, inventory.ssh, limiter=limiter) for _ in range(24)]
        try:
            with ThreadPoolExecutor(len(hosts)) as pool:
                list(pool.map(SSHHost.connect, hosts))
            assert all(ssh.connected for ssh in hosts)
            print(f"24 concurrent handshakes: {sum(ssh.attempts for ssh in hosts)} attempts")
        finally:
            for ssh in hosts:
                ssh.close()


HOSTILE = [
    "$(touch /tmp/coord-pwned-MARK); ;|&",
    "`touch /tmp/coord-pwned-MARK`",
    "a'b\"c\\d",
    "*",
    "~",
    "two\nlines",
    "",
    "  spaced  ",
    "--help",
    "; rm -rf /tmp/coord-pwned-MARK #",
]


@pytest.mark.usefixtures("lab")
class TestCommands:
    pytestmark = needs_lab

    def test_hostile_arguments_arrive_verbatim(self, server: SSHHost) -> None:
        mark = secrets.token_hex(4)
        arguments = [argument.replace("MARK", mark) for argument in HOSTILE]
        stdout, stderr = server.run(
            [server.python, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *arguments]
        )
        assert json.loads(stdout) == arguments
        assert stderr == ""
        assert not Path(f"/tmp/coord-pwned-{mark}").exists()

    def test_a_failing_command_names_its_last_stderr_line(self, server: SSHHost) -> None:
        with pytest.raises(RemoteCommandFailed) as caught:
            server.run(["sh", "-c", "echo first >&2; echo last words >&2; exit 3"])
        assert str(caught.value) == (
            "server: `sh -c 'echo first >&2; echo last words >&2; exit 3'` exited 3: last words"
        )

    def test_a_command_past_its_timeout_fails(self, server: SSHHost) -> None:
        started = time.monotonic()
        with pytest.raises(RemoteCommandFailed, match=r"did not finish within 0\.5s"):
            server.run(["sleep", "3"], timeout=0.5)
        assert time.monotonic() - started < 0.5 + MARGIN
        assert server.run(["echo", "still usable"])[0] == "still usable\n"

    def test_large_output_on_both_streams(self, server: SSHHost) -> None:
        script = "import sys; sys.stdout.write('o' * 3_000_000); sys.stderr.write('e' * 3_000_000)"
        stdout, stderr = server.run([server.python, "-c", script])
        assert (len(stdout), len(stderr)) == (3_000_000, 3_000_000)

    def test_put_counts_bytes(self, server: SSHHost, tmp_path: Path) -> None:
        payload = secrets.token_bytes(300_000)
        local = tmp_path / "payload.bin"
        local.write_bytes(payload)
        remote = f"/tmp/coord-put-{secrets.token_hex(4)}.bin"
        before = server.bytes_uploaded
        try:
            assert server.put(local, remote) == len(payload)
            assert server.put(local, remote) == len(payload)
            assert server.bytes_uploaded - before == 2 * len(payload)
            digest = server.run(["sha256sum", remote])[0].split()[0]
            assert digest == hashlib.sha256(payload).hexdigest()
        finally:
            server.run(["rm", "-f", remote])
        with pytest.raises(RemoteCommandFailed, match="cannot upload"):
            server.put(local, "/nonexistent-dir/x.bin")

    def test_start_talks_to_a_process_through_its_stdin(self, server: SSHHost) -> None:
        script = (
            "import sys\n"
            "token = sys.stdin.readline().strip()\n"
            "print('ready', len(token), flush=True)\n"
            "sys.stderr.write('a warning\\n'); sys.stderr.flush()\n"
            "rest = sys.stdin.read()\n"
            "print('bye', len(rest), flush=True)\n"
            "sys.exit(7)\n"
        )
        token = secrets.token_hex(16)
        with server.start([server.python, "-c", script], f"{token}\n") as process:
            assert process.readline(10) == "ready 32"
            with pytest.raises(TimeoutError):
                process.readline(0.2)
            assert process.poll() is None
            process.write("abc")
            process.close_stdin()
            assert process.readline(10) == "bye 3"
            assert process.readline(10) is None
            assert process.wait(10) == 7
            assert process.stderr() == "a warning\n"

    def test_closing_the_connection_ends_a_started_process(self, inventory: Inventory) -> None:
        ssh = SSHHost(inventory.host("client1"), inventory.ssh).connect()
        script = "import os, sys; print(os.getpid(), flush=True); sys.stdin.read()"
        process = ssh.start([ssh.python, "-c", script])
        line = process.readline(10)
        assert line is not None
        pid = int(line)
        assert Path(f"/proc/{pid}").exists()  # lab hosts share this machine's PID namespace
        ssh.close()
        poll_until(lambda: not Path(f"/proc/{pid}").exists(), 10, f"process {pid} to exit")

    def test_open_channel_reaches_a_port_on_the_host(
        self, server: SSHHost, inventory: Inventory
    ) -> None:
        address = inventory.host("server").address
        channel = server.open_channel(6379, remote_host=address)
        try:
            channel.settimeout(10)
            channel.sendall(b"PING\r\n")
            assert channel.recv(64).startswith(b"-NOAUTH")  # the lab's Redis, asking for AUTH
        finally:
            channel.close()
        with pytest.raises(AgentError, match=f"cannot open a tunnel to 127.0.0.1:{CLOSED_PORT}"):
            server.open_channel(CLOSED_PORT)

    def test_a_closed_connection_is_reported(self, inventory: Inventory) -> None:
        ssh = SSHHost(inventory.host("client1"), inventory.ssh).connect()
        ssh.close()
        ssh.close()
        with pytest.raises(HostUnreachable, match=r"client1: the SSH connection .* is closed"):
            ssh.run(["true"])


def test_host_fields_win_over_defaults() -> None:
    host = Host(name="h", address="198.18.0.10", user="alice", key_file="~/k", roles=["client"])
    ssh = SSHHost(host, SSHDefaults(user="bob", key_file="/other", known_hosts="~/kh"))
    assert ssh.user == "alice"
    assert ssh.key_file == Path("~/k").expanduser()
    assert ssh.known_hosts == Path("~/kh").expanduser()
    assert ssh.target == "198.18.0.10:22"
    assert not ssh.connected
    bare = SSHHost(host.model_copy(update={"user": None, "key_file": None}), SSHDefaults())
    assert bare.user is None and bare.key_file is None


def test_a_port_that_never_speaks_ssh_fails_within_the_timeout(tmp_path: Path) -> None:
    """TCP connects (the listener's backlog accepts it) but no banner ever comes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        host = Host(name="mute", address="127.0.0.1", port=port, roles=["client"])
        settings = SSHDefaults(known_hosts=str(tmp_path / "known_hosts"), connect_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(HostUnreachable) as caught:
            SSHHost(host, settings).connect()
        assert time.monotonic() - started < 1.0 + MARGIN
    assert str(caught.value) == (
        f"mute: cannot connect to 127.0.0.1:{port} within 1s: no SSH handshake in time"
    )
