"""The agent and the coordinator's link to it, as real processes talking over real sockets.

Each test starts ``python -m agent serve`` (or a thin wrapper around the same entry point that
first shrinks a protocol constant or puts child processes in the agent's group), speaks the
startup protocol on its stdin/stdout, and connects over TCP to 127.0.0.1 — what the SSH port
forward delivers in production. Nothing is mocked; every wait is a poll with a deadline.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import psutil
import pytest
import rpyc
from paramiko.common import AUTH_SUCCESSFUL, OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED, OPEN_SUCCEEDED
from rpyc.core import consts, netref
from rpyc.core.stream import SocketStream

import agent
from agent import api, protocol
from coordinator.core.errors import AgentAuthError, AgentError, AgentLost
from coordinator.remote.agent_link import (
    AgentInfo,
    AgentLink,
    AgentStatus,
    Heartbeater,
    ReadyInfo,
    measure_offset,
    new_token,
    parse_ready_line,
    startup_line,
)
from tests.helpers import poll_until, process_gone, read_fd_line

REPO = Path(__file__).resolve().parents[2]
START_DEADLINE = 10.0
EXIT_DEADLINE = 10.0

# Runs the agent's real entry point after optional test-only preparation: shrinking protocol
# constants (they are read at use time), and leading the process group early so that child
# processes started here share it (main() then finds it already leads its group: the path sshd
# gives it in production). One child is direct; one is orphaned at once (its shell exits), so
# only a process-group sweep can find it.
WRAPPER = """
import json, os, subprocess, sys
options = json.loads(sys.argv[1])
import agent.protocol
for name, value in options.get("protocol", {}).items():
    setattr(agent.protocol, name, value)
children_file = options.get("children_file")
if children_file:
    os.setsid()
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    direct = subprocess.Popen(["sleep", "300"], **quiet)
    shell = subprocess.run(
        ["sh", "-c", "sleep 300 >/dev/null 2>&1 </dev/null & echo $!"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True,
    )
    with open(children_file, "w") as out:
        json.dump({"direct": direct.pid, "orphan": int(shell.stdout)}, out)
from agent.__main__ import run
run(sys.argv[2:])
"""

ALLOWED_RESULT_TYPES = (str, bytes, int, float, bool, type(None))
COORD_VERSIONS = protocol.Versions(coord=agent.__version__, rpyc=rpyc.__version__)


# --- helpers -------------------------------------------------------------------------------


def assert_is_plain(value: object) -> None:
    assert not isinstance(value, netref.BaseNetref)
    if type(value) is tuple:
        for item in value:
            assert_is_plain(item)
    else:
        assert type(value) in ALLOWED_RESULT_TYPES, type(value)


@dataclass
class Agent:
    """One agent process started by a test, with the token it was given."""

    proc: subprocess.Popen[bytes]
    state_dir: Path
    token: str
    ready: ReadyInfo | None = None
    first_line: str = ""
    children: dict[str, int] = field(default_factory=dict)

    @property
    def port(self) -> int:
        assert self.ready is not None
        return self.ready.port

    @property
    def pid_file(self) -> Path:
        return self.state_dir / protocol.PID_FILE

    def log(self) -> str:
        return (self.state_dir / protocol.LOG_FILE).read_text(encoding="utf-8")

    def link(self, **options: Any) -> AgentLink:
        return AgentLink.connect_tcp("testhost", self.port, self.token, **options)

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait_exit(self, timeout: float = EXIT_DEADLINE) -> int:
        return self.proc.wait(timeout=timeout)


AgentFactory = Callable[..., Agent]


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[AgentFactory]:
    started: list[Agent] = []

    def start(
        *,
        watchdog: float = 30.0,
        versions: protocol.Versions | None = None,
        protocol_overrides: dict[str, float] | None = None,
        children: bool = False,
        extra_args: tuple[str, ...] = (),
        expect_ready: bool = True,
        file_limit: tuple[int, int] | None = None,
    ) -> Agent:
        state_dir = tmp_path / f"state{len(started)}"
        args = ["serve", "--watchdog", str(watchdog), "--state-dir", str(state_dir), *extra_args]
        children_file = tmp_path / f"children{len(started)}.json"
        if protocol_overrides or children:
            options = {
                "protocol": protocol_overrides or {},
                "children_file": str(children_file) if children else None,
            }
            argv = [sys.executable, "-c", WRAPPER, json.dumps(options), *args]
        else:
            argv = [sys.executable, "-m", "agent", *args]
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env["PYTHONPATH"] = str(REPO)
        if file_limit is not None:
            argv = ["prlimit", f"--nofile={file_limit[0]}:{file_limit[1]}", *argv]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=tmp_path,
            bufsize=0,
        )
        handle = Agent(proc=proc, state_dir=state_dir, token=new_token())
        started.append(handle)
        assert proc.stdin is not None and proc.stdout is not None
        if versions is None:
            proc.stdin.write(startup_line(handle.token))
        else:
            proc.stdin.write(protocol.encode_startup(handle.token, versions))
        proc.stdin.flush()
        line = read_fd_line(proc.stdout.fileno(), START_DEADLINE).decode()
        handle.first_line = line
        if expect_ready:
            handle.ready = parse_ready_line(line, host="testhost")
        if children:
            handle.children = json.loads(children_file.read_text())
        return handle

    yield start

    for handle in started:  # a failed test must not leave processes behind either
        if handle.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(handle.proc.pid, signal.SIGKILL)  # the agent leads its group
            handle.proc.wait(timeout=EXIT_DEADLINE)
        for pid in handle.children.values():
            if pid and not process_gone(pid):
                os.kill(pid, signal.SIGKILL)
        for pipe in (handle.proc.stdin, handle.proc.stdout):
            if pipe is not None:
                pipe.close()


def close_after_stop(conn: Any) -> None:
    """Close a raw rpyc connection whose agent is closing it too.

    rpyc 6 cannot close both ends at once: our ``close()`` waits for its CLOSE request's reply,
    serves the agent's own CLOSE meanwhile (which cleans the connection up), then cleans up
    again and trips over the cleared root (AttributeError). ``AgentLink.close`` swallows it.
    """
    with contextlib.suppress(AttributeError):
        conn.close()


def raw_connection(port: int, token: str) -> Any:
    """An attacker's view: a correct token, then rpyc's most permissive client settings."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(protocol.encode_auth_request(token, COORD_VERSIONS))
    reply = b""
    while not reply.endswith(b"\n"):
        reply += sock.recv(1)
    assert protocol.decode_auth_reply(reply.rstrip(b"\n")).ok
    sock.settimeout(None)
    return rpyc.connect_stream(
        SocketStream(sock),
        config={"allow_all_attrs": True, "allow_pickle": True, "sync_request_timeout": 5},
    )


# --- startup ---------------------------------------------------------------------------------


def test_agent_announces_itself_and_listens_on_loopback_only(start_agent: AgentFactory) -> None:
    handle = start_agent(extra_args=("--bundle-hash", "abc123"))
    ready = handle.ready
    assert ready is not None
    assert ready.pid == handle.proc.pid
    assert (ready.agent_version, ready.rpyc_version) == (agent.__version__, rpyc.__version__)

    pid_file = json.loads(handle.pid_file.read_text())
    assert pid_file == {"pid": ready.pid, "port": ready.port}

    process = psutil.Process(ready.pid)
    listening = [c for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert [(c.laddr.ip, c.laddr.port) for c in listening] == [("127.0.0.1", ready.port)]
    # Reachable on no other local address.
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                with pytest.raises(OSError):
                    socket.create_connection((address.address, ready.port), timeout=2).close()
    # The token never appears where other local users could read it.
    assert handle.token not in " ".join(process.cmdline())
    assert handle.token not in handle.log()
    # It leads its own process group and session.
    assert os.getpgid(ready.pid) == ready.pid
    assert os.getsid(ready.pid) == ready.pid


def test_a_coordinator_of_another_version_is_refused_at_startup(start_agent: AgentFactory) -> None:
    handle = start_agent(
        versions=protocol.Versions(coord="0.0.1", rpyc=rpyc.__version__), expect_ready=False
    )
    assert handle.wait_exit() == 2
    with pytest.raises(AgentAuthError) as refused:
        parse_ready_line(handle.first_line, host="testhost")
    message = str(refused.value)
    assert message.startswith("testhost: agent refused to start: version mismatch")
    assert "0.0.1" in message and agent.__version__ in message and rpyc.__version__ in message


def test_another_rpyc_version_is_refused_at_startup(start_agent: AgentFactory) -> None:
    handle = start_agent(
        versions=protocol.Versions(coord=agent.__version__, rpyc="5.3.1"), expect_ready=False
    )
    assert handle.wait_exit() == 2
    with pytest.raises(AgentAuthError, match=r"rpyc 5\.3\.1"):
        parse_ready_line(handle.first_line, host="testhost")


def test_junk_is_not_a_ready_line() -> None:
    for junk in (
        "",
        "Welcome to Ubuntu",
        "[]",
        '{"event": "ready"}',
        '{"event": "ready", "port": 0}',
    ):
        with pytest.raises(AgentError, match=r"^h: agent did not start"):
            parse_ready_line(junk, host="h")


# --- authentication --------------------------------------------------------------------------


def test_the_right_token_opens_the_link(start_agent: AgentFactory) -> None:
    handle = start_agent(extra_args=("--bundle-hash", "abc123"))
    with handle.link() as link:
        info = link.hello()
        assert isinstance(info, AgentInfo)
        assert info.pid == handle.proc.pid
        assert (info.agent_version, info.rpyc_version) == (agent.__version__, rpyc.__version__)
        assert info.python == platform.python_version()  # the agent runs this interpreter
        assert info.bundle_hash == "abc123"
        assert link.agent_versions == COORD_VERSIONS


def test_a_wrong_token_is_refused_and_closed(start_agent: AgentFactory) -> None:
    handle = start_agent()
    with pytest.raises(AgentAuthError, match=r"^testhost: agent refused the token$"):
        AgentLink.connect_tcp("testhost", handle.port, "0" * 64)
    # At the socket level: one refusal line, then the agent closes the connection.
    with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as sock:
        sock.sendall(protocol.encode_auth_request("f" * 64, COORD_VERSIONS))
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert json.loads(received) == {"status": "refused", "reason": "token"}


def test_rpyc_without_a_token_gets_nothing(start_agent: AgentFactory) -> None:
    handle = start_agent()
    sock = socket.create_connection(("127.0.0.1", handle.port), timeout=5)
    conn = rpyc.connect_stream(SocketStream(sock), config={"sync_request_timeout": 5})
    with pytest.raises(EOFError):
        conn.root.hello()
    conn.close()


def test_a_silent_connection_is_closed_after_the_auth_timeout(start_agent: AgentFactory) -> None:
    handle = start_agent(protocol_overrides={"AUTH_TIMEOUT": 0.3})
    with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as sock:
        started = time.monotonic()
        received = b""
        while chunk := sock.recv(4096):  # returns b"" when the agent closes
            received += chunk
        assert time.monotonic() - started < 3
    assert json.loads(received)["status"] == "refused"


def test_data_sent_ahead_of_the_answer_is_refused(start_agent: AgentFactory) -> None:
    handle = start_agent()
    with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as sock:
        sock.sendall(protocol.encode_auth_request(handle.token, COORD_VERSIONS) + b"rpyc bytes")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert json.loads(received) == {"status": "refused", "reason": "malformed"}


def test_a_version_mismatch_at_connect_names_both_sides(start_agent: AgentFactory) -> None:
    handle = start_agent()
    ours = protocol.Versions(coord="9.9.9", rpyc=rpyc.__version__)
    with pytest.raises(AgentAuthError) as refused:
        handle.link(versions=ours)
    message = str(refused.value)
    assert message.startswith("testhost: version mismatch: coordinator runs coord 9.9.9")
    assert f"agent runs coord {agent.__version__}, rpyc {rpyc.__version__}" in message


def test_a_port_without_an_agent_is_reported() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(AgentError, match="no answer to the token"):
            AgentLink.connect_tcp("testhost", port, "a" * 64, handshake_timeout=0.3)
    with pytest.raises(AgentLost, match="cannot connect"):
        AgentLink.connect_tcp("testhost", port, "a" * 64)


def flood_idle(port: int, count: int, until_closed: int) -> list[socket.socket]:
    """Open ``count`` idle connections to the agent, as another local user could; return once
    the agent has closed ``until_closed`` of them, with those still open (the caller closes
    them)."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    closed = 0
    deadline = time.monotonic() + 60
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while closed < until_closed:
            if time.monotonic() > deadline:
                pytest.fail(f"the agent closed only {closed} of {count} idle connections")
            for key, _ in selector.select(timeout=1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    sock.close()
                    closed += 1
    return [sock for sock in socks if sock.fileno() != -1]


def refused_connections(port: int, count: int) -> None:
    """``count`` connections that send junk and read the refusal to its end."""
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"junk\n")
            while sock.recv(4096):
                pass


def test_the_soft_file_limit_is_raised_to_the_hard_one(start_agent: AgentFactory) -> None:
    handle = start_agent(file_limit=(256, 4096))
    assert psutil.Process(handle.proc.pid).rlimit(psutil.RLIMIT_NOFILE) == (4096, 4096)


def test_idle_connections_beyond_the_file_limit_do_not_close_the_listener(
    start_agent: AgentFactory,
) -> None:
    handle = start_agent(file_limit=(256, 256))
    with handle.link() as link:
        idle = flood_idle(handle.port, 1100, until_closed=1000)
        try:
            assert link.heartbeat() > 0
            with handle.link() as second:
                assert second.hello().pid == handle.proc.pid
        finally:
            for sock in idle:
                sock.close()
    assert "dropped the oldest unauthenticated connection" in handle.log()


def test_accept_errors_are_survived(start_agent: AgentFactory) -> None:
    """With no bound on waiting connections, accept() runs out of descriptors (EMFILE): the
    agent drops the oldest waiting connection and carries on."""
    handle = start_agent(file_limit=(64, 64),
                         protocol_overrides={"MAX_UNAUTHENTICATED": 100_000})
    with handle.link() as link:
        idle = flood_idle(handle.port, 200, until_closed=100)
        try:
            assert link.heartbeat() > 0
            with handle.link() as second:
                assert second.hello().pid == handle.proc.pid
        finally:
            for sock in idle:
                sock.close()
    assert "Too many open files" in handle.log()


def test_refusals_are_logged_at_a_bounded_rate(start_agent: AgentFactory) -> None:
    handle = start_agent()
    before = len(handle.log())
    refused_connections(handle.port, 300)
    grown = handle.log()[before:]
    assert grown.count("refused connection") <= protocol.REFUSAL_LOG_BURST, len(grown)
    assert len(grown) < 200 * protocol.REFUSAL_LOG_BURST, len(grown)
    with handle.link() as link:
        assert link.heartbeat() > 0


def test_the_log_is_capped_while_the_agent_runs(start_agent: AgentFactory) -> None:
    cap = 16_384
    handle = start_agent(protocol_overrides={"LOG_MAX_BYTES": cap,
                                             "REFUSAL_LOG_BURST": 1_000_000})
    refused_connections(handle.port, 600)
    log = handle.state_dir / protocol.LOG_FILE
    rotated = handle.state_dir / (protocol.LOG_FILE + ".1")
    assert log.stat().st_size <= cap, log.stat().st_size
    assert rotated.exists() and rotated.stat().st_size <= cap + 1024
    assert rotated.stat().st_mode & 0o077 == 0
    assert sorted(path.name for path in handle.state_dir.iterdir()) == sorted(
        [protocol.LOG_FILE, protocol.LOG_FILE + ".1", protocol.PID_FILE]
    )
    with handle.link() as link:  # stderr and logging both follow the new file
        assert link.heartbeat() > 0


# --- the restricted service ------------------------------------------------------------------


def refused(action: Callable[..., object], *args: object, **kwargs: object) -> BaseException:
    """Call ``action(*args, **kwargs)``; it must fail. Returns the exception."""
    try:
        result = action(*args, **kwargs)
    except (AttributeError, PermissionError, TypeError, ValueError) as exc:
        return exc
    pytest.fail(f"escape probe succeeded: {result!r}")


def test_attribute_escape_probes_fail(start_agent: AgentFactory) -> None:
    handle = start_agent()
    conn = raw_connection(handle.port, handle.token)
    root = conn.root

    def remote_getattr(obj: object, name: str) -> object:
        return netref.syncreq(obj, consts.HANDLE_GETATTR, name)

    # The probes from the issue, as written and at the protocol level.
    cls = root.__class__  # resolved locally by rpyc's netref, never a remote object
    assert not isinstance(cls, netref.BaseNetref)
    for name in ("__class__", "__subclasses__", "__dict__", "__init__", "__reduce_ex__", "__doc__"):
        refused(remote_getattr, root, name)
    refused(lambda: conn.modules)
    refused(lambda: conn.eval)
    for name in ("modules", "eval", "execute", "getmodule", "namespace", "exposed_getmodule"):
        refused(getattr, root, name)
    # Private names and rpyc's own exposed_ methods are not reachable.
    for name in ("_liveness", "_rpyc_getattr", "_protocol", "exposed_hello", "get_service_name"):
        refused(getattr, root, name)
    # A method's internals stay out of reach.
    hello = root.hello
    for name in ("__func__", "__self__", "__globals__", "__code__", "__class__", "__call__"):
        refused(remote_getattr, hello, name)
    refused(lambda: root.exposed_hello.__func__)
    # No writes, no calls of the root, no request kinds beyond method calls.
    refused(setattr, root, "hello", None)
    refused(delattr, root, "hello")
    refused(root)
    refused(netref.syncreq, root, consts.HANDLE_CALL, (), ())  # what root() would send
    for kind, args in (
        (consts.HANDLE_DIR, ()),
        (consts.HANDLE_PICKLE, (2,)),
        (consts.HANDLE_BUFFITER, (1,)),
        (consts.HANDLE_CMP, (1, "__eq__")),
        (consts.HANDLE_SETATTR, ("x", 1)),
        (consts.HANDLE_DELATTR, ("hello",)),
        (consts.HANDLE_CTXEXIT, (None,)),
    ):
        refused(netref.syncreq, root, kind, *args)
    # Arguments must be plain data too: a list would reach the agent as a netref.
    refused(root.heartbeat, [1, 2])
    refused(root.heartbeat, x={"a": 1})
    # Nothing above hurt the agent.
    assert json.loads(root.hello())["answer"]["pid"] == handle.proc.pid
    conn.close()


def test_every_method_returns_plain_data(start_agent: AgentFactory) -> None:
    handle = start_agent()
    conn = raw_connection(handle.port, handle.token)
    # The root describes itself by its exposed names only.
    described = conn.sync_request(consts.HANDLE_INSPECT, conn.root.____id_pack__)
    exposed = {name for name, _doc in described}
    assert exposed == set(api.METHODS)
    # Methods that take no argument; the load methods are checked in test_builtin_driver, the
    # run lock in test_run_guards, the metrics in test_local_run and test_metrics_lab.
    for name in sorted(exposed - {"stop", "prepare_load", "prepared", "start_load",
                                  "load_report", "take_run_lock", "start_metrics",
                                  "align_metrics", "describe", "baseline_tools",
                                  "start_netserver", "start_netperf"}):
        assert_is_plain(getattr(conn.root, name)())
    assert_is_plain(conn.root.stop())
    close_after_stop(conn)
    assert handle.wait_exit() == 0


def test_typed_answers(start_agent: AgentFactory) -> None:
    handle = start_agent(watchdog=7)
    with handle.link() as link:
        before = time.time_ns()
        assert link.heartbeat() >= before
        assert link.clock() >= before
        status = link.status()
        assert isinstance(status, AgentStatus)
        assert status.pid == handle.proc.pid
        assert status.watchdog_s == 7
        assert status.rss_bytes > 0 and status.cpu_s >= 0 and status.uptime_s >= 0
        assert status.heartbeat_age_s is not None and status.heartbeat_age_s < 5
        assert status.children == 0
        with pytest.raises(AgentError, match=r"nosuch\(\) failed on the agent: AttributeError"):
            link.call("nosuch")
        assert not link.closed  # a remote error is not a lost agent


def test_clock_offset_to_a_local_agent_is_zero_within_uncertainty(
    start_agent: AgentFactory,
) -> None:
    handle = start_agent()
    with handle.link() as link:
        estimate = measure_offset(link, rounds=8)
    assert estimate.samples == 8
    assert abs(estimate.offset_ns) <= estimate.uncertainty_ns
    assert 0 < estimate.rtt_ns < 1_000_000_000


# --- lifecycle -------------------------------------------------------------------------------


def assert_children_gone(handle: Agent) -> None:
    assert set(handle.children) == {"direct", "orphan"}
    for role, pid in handle.children.items():
        poll_until(functools.partial(process_gone, pid), EXIT_DEADLINE, f"the {role} child to stop")


def test_closing_stdin_stops_the_agent_and_its_group(start_agent: AgentFactory) -> None:
    handle = start_agent(children=True)
    for pid in handle.children.values():
        assert os.getpgid(pid) == handle.proc.pid
    with handle.link() as link:
        assert link.status().children >= 1
    handle.close_stdin()
    assert handle.wait_exit() == 0
    assert_children_gone(handle)
    assert not handle.pid_file.exists()
    assert "shutting down: stdin closed" in handle.log()


def test_stop_stops_the_agent_and_its_group(start_agent: AgentFactory) -> None:
    handle = start_agent(children=True)
    link = handle.link()
    link.stop()
    assert link.closed
    assert handle.wait_exit() == 0
    assert_children_gone(handle)
    assert not handle.pid_file.exists()
    assert "shutting down: stop() requested by the coordinator" in handle.log()


def test_sigterm_stops_the_agent_cleanly(start_agent: AgentFactory) -> None:
    handle = start_agent()
    handle.proc.send_signal(signal.SIGTERM)
    assert handle.wait_exit() == 0
    assert not handle.pid_file.exists()
    assert "shutting down: received SIGTERM" in handle.log()


def test_the_watchdog_stops_an_agent_nobody_talks_to(start_agent: AgentFactory) -> None:
    handle = start_agent(watchdog=1, children=True)
    assert handle.wait_exit(timeout=EXIT_DEADLINE) == 0
    assert_children_gone(handle)
    assert not handle.pid_file.exists()
    assert "shutting down: watchdog: no request from the coordinator" in handle.log()


def test_heartbeats_keep_the_agent_alive(start_agent: AgentFactory) -> None:
    handle = start_agent(watchdog=1)
    with handle.link() as link:
        heartbeater = Heartbeater(link, interval=0.2).start()
        with pytest.raises(subprocess.TimeoutExpired):
            handle.wait_exit(timeout=3.0)  # three watchdog periods, alive throughout
        heartbeater.stop()
        assert heartbeater.error is None and not heartbeater.running
        status = link.status()
        assert status.heartbeat_age_s is not None and status.heartbeat_age_s < 1
    assert handle.wait_exit() == 0  # once they stop, the watchdog fires


def test_a_killed_agent_is_reported_lost(start_agent: AgentFactory) -> None:
    handle = start_agent()
    link = handle.link()
    lost: list[AgentError] = []
    heartbeater = Heartbeater(link, interval=0.05, on_lost=lost.append).start()
    handle.proc.kill()
    handle.wait_exit()
    with pytest.raises(AgentLost, match=r"^testhost: "):
        link.heartbeat()
    assert link.closed
    poll_until(lambda: not heartbeater.running, EXIT_DEADLINE, "the heartbeater to notice")
    assert isinstance(heartbeater.error, AgentLost) and lost == [heartbeater.error]
    assert link.loss is not None
    with pytest.raises(AgentLost) as later:
        link.hello()
    assert later.value.reason == link.loss.reason  # a later call repeats why the link closed


# --- over a paramiko channel, as through the SSH port forward --------------------------------


class _ForwardingServer(paramiko.ServerInterface):
    """An in-process SSH server that only opens direct-tcpip channels (to 127.0.0.1)."""

    def get_allowed_auths(self, username: str) -> str:
        return "none"

    def check_auth_none(self, username: str) -> int:
        return AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(
        self, chanid: int, origin: tuple[str, int], destination: tuple[str, int]
    ) -> int:
        if destination[0] != "127.0.0.1":
            return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self.destination = destination
        return OPEN_SUCCEEDED


def _pump(source: Any, sink: Any) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.close()


@pytest.fixture
def ssh_tunnel() -> Iterator[Callable[[int], paramiko.Channel]]:
    """Open direct-tcpip channels to local ports through a real (in-process) SSH transport."""
    client_sock, server_sock = socket.socketpair()
    server = _ForwardingServer()
    server_transport = paramiko.Transport(server_sock)
    server_transport.add_server_key(paramiko.RSAKey.generate(1024))
    negotiated = threading.Event()
    server_transport.start_server(event=negotiated, server=server)  # returns at once
    client_transport = paramiko.Transport(client_sock)
    client_transport.connect()
    client_transport.auth_none("coord")

    def open_channel(port: int) -> paramiko.Channel:
        channel = client_transport.open_channel(
            "direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0), timeout=5
        )
        remote = server_transport.accept(timeout=5)
        assert remote is not None
        upstream = socket.create_connection(server.destination, timeout=5)
        upstream.settimeout(None)
        for source, sink in ((remote, upstream), (upstream, remote)):
            threading.Thread(target=_pump, args=(source, sink), daemon=True).start()
        return channel

    yield open_channel
    client_transport.close()
    server_transport.close()


def test_the_link_runs_over_an_ssh_channel(
    start_agent: AgentFactory, ssh_tunnel: Callable[[int], paramiko.Channel]
) -> None:
    handle = start_agent()
    with pytest.raises(AgentAuthError, match="refused the token"):
        AgentLink.connect("testhost", ssh_tunnel(handle.port), "0" * 64)
    link = AgentLink.connect("testhost", ssh_tunnel(handle.port), handle.token)
    assert link.hello().pid == handle.proc.pid
    assert abs(measure_offset(link).offset_ns) < 1_000_000_000
    big = link.call("hello")  # several round trips on one channel, answers intact
    assert isinstance(big, str) and json.loads(big)["answer"]["pid"] == handle.proc.pid
    link.stop()
    assert handle.wait_exit() == 0
