"""The builtin driver against a real redis-server: directly, and through a real agent process.

Each test starts its own ``redis-server`` on a free loopback port (no persistence) and stops it
afterwards. Loads are short (intervals of half a second) so the whole module stays well under a
minute. Nothing is mocked; every wait is a poll with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hiredis
import psutil
import pytest
import redis

from agent import protocol
from agent.drivers.base import LoadState
from agent.drivers.builtin import BuiltinDriver
from agent.drivers.errors import DriverError
from agent.drivers.intervals import LoadReport
from agent.drivers.resp import RequestMix, encode_command
from agent.drivers.resp_connection import RECV_SIZE
from agent.drivers.spec import parse_spec
from agent.histograms import decode
from coordinator.core import reports, stats
from coordinator.core.errors import AgentLost
from coordinator.remote.agent_link import (
    AgentLink,
    LoadError,
    new_token,
    parse_ready_line,
    startup_line,
)
from tests.helpers import poll_until, process_gone, read_fd_line

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs redis-server on PATH")

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 15.0
START_MARGIN_NS = 300_000_000  # load processes are ready: they only need to wake up
PASSWORD = "s3cret"
WRONG_PASSWORD = "wrong"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- redis-server ----------------------------------------------------------------------------


@dataclass
class RedisServer:
    port: int
    password: str | None
    proc: subprocess.Popen[bytes]

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    started: list[RedisServer] = []

    def start(password: str | None = None) -> RedisServer:
        port = free_port()
        directory = tmp_path / f"redis{len(started)}"
        directory.mkdir()
        argv = [
            str(REDIS_SERVER),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(directory),
        ]  # fmt: skip
        if password is not None:
            argv += ["--requirepass", password]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = RedisServer(port, password, proc)
        started.append(server)

        def answers() -> bool:
            with contextlib.suppress(redis.RedisError), server.client() as client:
                return bool(client.ping())
            return False

        poll_until(answers, DEADLINE, f"redis-server on port {port}")
        return server

    yield start
    for server in started:
        server.proc.terminate()
        server.proc.wait(timeout=DEADLINE)


def make_spec(
    port: int,
    *,
    password: str | None = None,
    interval_s: float = 0.5,
    warmup_s: float = 0.5,
    duration_s: float = 1.5,
    **params: Any,
) -> dict[str, Any]:
    builtin = {
        "processes": 1,
        "connections": 4,
        "pipeline": 1,
        "set_ratio": 0.1,
        "keyspace": 1000,
        "value_size": 32,
        "rate": None,
        "preload": False,
    }
    builtin.update(params)
    return {
        "format": 2,
        "driver": "builtin",
        "target": {
            "address": "127.0.0.1",
            "port": port,
            "password": password,
            "username": None,
            "tls": None,
        },
        "timeline": {
            "interval_ns": round(interval_s * 1e9),
            "warmup_intervals": round(warmup_s / interval_s),
            "measure_intervals": round(duration_s / interval_s),
        },
        "histogram": {"lowest_usec": 1, "highest_usec": 60_000_000, "significant_figures": 3},
        "params": builtin,
    }


@pytest.fixture
def driver() -> Iterator[BuiltinDriver]:
    made = BuiltinDriver()
    yield made
    pids = made.worker_pids()
    made.close()
    for pid in pids:  # a test that fails midway must not leave load processes behind
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)


def run_load(
    driver: BuiltinDriver,
    spec: dict[str, Any],
    during: Callable[[BuiltinDriver], None] | None = None,
) -> LoadReport:
    """Prepare, start a little in the future, optionally act while it runs, wait, report."""
    parsed = parse_spec(json.dumps(spec))
    driver.prepare(parsed)
    t0_ns = time.time_ns() + START_MARGIN_NS
    driver.start_at(t0_ns)
    if during is not None:
        during(driver)
    poll_until(lambda: driver.state.done, parsed.timeline.total_s + DEADLINE, "the load to end")
    return driver.report()


def wait_for_interval(driver: BuiltinDriver, index: int) -> None:
    def reached() -> bool:
        progress = driver.progress()
        return progress.interval is not None and progress.interval >= index

    poll_until(reached, DEADLINE, f"interval {index} to finish")


def measured(report: LoadReport) -> list[Any]:
    return [interval for interval in report.intervals if interval.phase == "measure"]


# --- closed loop -----------------------------------------------------------------------------


def test_closed_loop_over_two_processes(
    driver: BuiltinDriver, redis_server: Callable[..., RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agent.drivers.kit.process_driver")
    server = redis_server()
    spec = make_spec(
        server.port, processes=2, connections=20, pipeline=4, set_ratio=0.2, preload=True
    )
    with server.client() as client:
        client.flushall()
        report = run_load(driver, spec)
        assert client.dbsize() == 1000  # preloaded: every key of the keyspace exists
    preloads = [r.getMessage() for r in caplog.records if " preloaded " in r.getMessage()]
    assert sorted(line.split(" in ")[0] for line in preloads) == [
        "load process 0 preloaded 500 keys", "load process 1 preloaded 500 keys"]  # fmt: skip

    assert (report.processes, report.connections) == (2, 20)
    assert (report.warmup_intervals, report.measure_intervals) == (1, 3)
    assert report.interval_ns == 500_000_000
    assert [i.index for i in report.intervals] == [0, 1, 2, 3]
    assert [i.phase for i in report.intervals] == ["warmup", "measure", "measure", "measure"]
    assert all(i.complete for i in report.intervals)
    assert report.errors == {}
    assert 0 <= report.started_ns - report.t0_ns < 50_000_000
    assert report.start_spread_ns < 50_000_000
    assert report.stopped_ns >= report.t0_ns + 2_000_000_000
    total = sets = 0
    for interval in report.intervals:
        assert interval.requests > 0
        assert interval.bytes_sent > 0 and interval.bytes_received > 0
        assert interval.overflow == 0
        assert sum(c.count for c in interval.commands.values()) == interval.requests
        for command in interval.commands.values():
            assert decode(command.histogram).get_total_count() == command.count
        total += interval.requests
        sets += interval.commands["SET"].count
    assert sets / total == pytest.approx(0.2, abs=0.02)

    # What the coordinator reads: its own parser accepts the report as it is.
    parsed = reports.parse_agent_report(report.to_text(), "client1")
    assert stats.common_window([parsed]) == [1, 2, 3]
    assert sum(i.count for i in parsed.intervals) == total


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_set_get_batch_is_answered_byte_for_byte_as_it_expects(
    redis_server: Callable[..., RedisServer], protocol: int
) -> None:
    """The premise of the loops' unparsed reads (``Batch.replies``): a real Redis answers a
    SET/GET batch of the mix's keys, preloaded, with exactly those bytes, in RESP2 and RESP3."""
    server = redis_server()
    mix = RequestMix(keyspace=50, set_ratio=0.5, value_size=32, pipeline=16, seed=3)
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        sock.sendall(encode_command("HELLO", protocol))
        reader = hiredis.Reader()
        while (hello := reader.gets()) is False:  # the HELLO map, however it is split
            reader.feed(sock.recv(RECV_SIZE))
        assert not isinstance(hello, hiredis.ReplyError), hello
        sock.sendall(b"".join(mix.preload_batches(0, 50, 50)))
        assert read_exactly(sock, 5 * 50) == b"+OK\r\n" * 50
        for _ in range(20):
            batch = mix.next_batch()
            assert batch.replies is not None
            sock.sendall(batch.payload)
            assert read_exactly(sock, len(batch.replies)) == batch.replies
        sock.sendall(encode_command("PING"))
        assert read_exactly(sock, 7) == b"+PONG\r\n"  # nothing more came than expected


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the server closed the connection"
        data += chunk
    return data


def command_calls(client: redis.Redis) -> dict[str, int]:
    """``INFO commandstats`` calls per command (``set``, ``get``...)."""
    stats_ = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(fields["calls"]) for name, fields in stats_.items()}


@pytest.mark.parametrize("preload", [True, False])  # replies as expected, and nil GETs
def test_each_command_counts_as_many_replies_as_redis_counted_calls(
    driver: BuiltinDriver, redis_server: Callable[..., RedisServer], preload: bool
) -> None:
    """Per command, coord's replies equal Redis's calls: whether reads are counted unparsed
    (a preloaded keyspace: whole batches answered as expected) or parsed (GETs of missing
    keys)."""
    server = redis_server()
    spec = make_spec(server.port, connections=8, pipeline=16, set_ratio=0.3, keyspace=2000,
                     preload=preload)
    with server.client() as client:
        report = run_load(driver, spec)
        calls = command_calls(client)
    assert report.errors == {}
    counted = {name: sum(i.commands[name].count for i in report.intervals)
               for name in ("SET", "GET")}
    preloaded = 2000 if preload else 0
    assert (counted["SET"] + preloaded, counted["GET"]) == (calls["set"], calls["get"])
    assert sum(i.requests for i in report.intervals) == counted["SET"] + counted["GET"]


def test_wrongtype_errors_are_counted_by_type_and_the_run_completes(
    driver: BuiltinDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server()
    with server.client() as client:
        client.rpush("key:1", "x")  # a list where GET expects a string
    report = run_load(driver, make_spec(server.port, keyspace=4, set_ratio=0.0, pipeline=2))
    assert all(i.complete for i in report.intervals)
    assert set(report.errors) == {"WRONGTYPE"}
    errors = report.errors["WRONGTYPE"]
    requests = sum(i.requests for i in report.intervals)
    replies = sum(i.count for i in report.intervals)
    assert replies + errors == requests  # error replies are finished requests, not latencies
    assert errors / requests == pytest.approx(0.25, abs=0.05)  # one key of four
    for interval in report.intervals:
        assert interval.errors["WRONGTYPE"] > 0


@pytest.mark.parametrize("password", [None, PASSWORD])  # reconnecting authenticates again
def test_killed_connections_are_counted_and_reconnect(
    driver: BuiltinDriver, redis_server: Callable[..., RedisServer], password: str | None
) -> None:
    server = redis_server(password=password)
    killed: list[int] = []

    def kill_clients(running: BuiltinDriver) -> None:
        wait_for_interval(running, 0)
        with server.client() as client:
            killed.append(client.client_kill_filter(_type="normal", skipme=True))

    spec = make_spec(server.port, password=password, connections=5, pipeline=2, duration_s=2.0)
    report = run_load(driver, spec, during=kill_clients)
    assert killed[0] >= 5
    assert report.errors.get("connection", 0) >= 5  # at least one lost request per connection
    assert all(i.complete for i in report.intervals)
    last = report.intervals[-1]
    assert last.requests > 0 and "connection" not in last.errors  # reconnected, going on
    with server.client() as client:
        assert len(client.client_list(_type="normal")) >= 1


def test_a_server_pause_completes_and_shows_in_the_max_latency(
    driver: BuiltinDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server()

    def pause(running: BuiltinDriver) -> None:
        wait_for_interval(running, 0)  # the measure phase has begun
        with server.client() as client:
            client.client_pause(500)

    report = run_load(driver, make_spec(server.port, duration_s=2.0), during=pause)
    assert all(i.complete for i in report.intervals)
    assert report.errors == {}
    longest = max(
        decode(command.histogram).get_max_value()
        for interval in measured(report)
        for command in interval.commands.values()
    )
    assert longest >= 500_000  # µs


def test_stop_mid_run_cuts_the_last_interval_and_ends_the_processes(
    driver: BuiltinDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server()
    spec = make_spec(server.port, processes=2, connections=4, duration_s=10.0)
    driver.prepare(parse_spec(json.dumps(spec)))
    pids = driver.worker_pids()
    assert len(pids) == 2
    driver.start_at(time.time_ns() + START_MARGIN_NS)
    wait_for_interval(driver, 1)
    with pytest.raises(DriverError, match="state: no report while the load is running"):
        driver.report()
    driver.stop()
    assert driver.state.value == "stopped"
    report = driver.report()
    assert report.intervals[-1].complete is False
    assert all(interval.complete for interval in report.intervals[:-1])
    assert len(report.intervals) < 10
    assert report.stopped_ns < report.t0_ns + 10_500_000_000
    assert driver.progress().state.value == "stopped"
    poll_until(
        lambda: all(process_gone(pid) for pid in pids), DEADLINE, "the load processes to end"
    )
    driver.close()
    driver.close()  # idempotent


def test_closing_a_prepared_driver_ends_its_processes(
    driver: BuiltinDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server()
    driver.prepare(parse_spec(json.dumps(make_spec(server.port, processes=2, connections=2))))
    pids = driver.worker_pids()
    with server.client() as client:
        assert len(client.client_list(_type="normal")) == 3  # the driver's two, and ours
    driver.close()
    for pid in pids:
        assert process_gone(pid)


# --- refusals before any load ----------------------------------------------------------------


def test_a_wrong_password_fails_in_prepare_with_no_load(
    driver: BuiltinDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server(password=PASSWORD)
    spec = make_spec(server.port, password=WRONG_PASSWORD, processes=2, connections=4)
    with pytest.raises(DriverError) as refused:
        driver.prepare(parse_spec(json.dumps(spec)))
    assert refused.value.kind == "auth"
    assert refused.value.message == (
        f"cannot authenticate to 127.0.0.1:{server.port}: "
        "WRONGPASS invalid username-password pair or user is disabled."
    )
    assert driver.state.value == "failed"
    for pid in driver.worker_pids():
        assert process_gone(pid)
    with server.client() as client:
        poll_until(
            lambda: len(client.client_list(_type="normal")) == 1, DEADLINE, "no other client"
        )


def test_a_missing_password_is_an_auth_error(
    driver: BuiltinDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server(password=PASSWORD)
    with pytest.raises(DriverError, match=r"^auth: 127\.0\.0\.1:\d+ requires a password: NOAUTH"):
        driver.prepare(parse_spec(json.dumps(make_spec(server.port))))


def test_the_right_password_works(
    driver: BuiltinDriver, redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server(password=PASSWORD)
    report = run_load(driver, make_spec(server.port, password=PASSWORD, duration_s=0.5))
    assert report.errors == {}
    assert report.intervals[-1].requests > 0


def test_an_unreachable_target_fails_in_prepare(driver: BuiltinDriver) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(DriverError) as refused:
        driver.prepare(parse_spec(json.dumps(make_spec(port))))
    assert refused.value.kind == "unreachable"
    assert refused.value.message == f"cannot connect to 127.0.0.1:{port}: Connection refused"


def test_a_load_the_host_has_no_memory_for_is_refused_before_any_process_starts(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server()
    # 16,384 pooled requests, a tenth of them SETs of 64 KiB: ~100 MiB; 64 MiB "available".
    driver = BuiltinDriver(available_memory=lambda: 64 * 1024 * 1024)
    spec = make_spec(server.port, value_size=65536)
    try:
        with pytest.raises(DriverError) as refused:
            driver.prepare(parse_spec(json.dumps(spec)))
        assert refused.value.kind == "memory"
        assert refused.value.message.startswith("the load needs about 1")
        assert refused.value.message.endswith(
            "in 1 load process(es), but this host has 64.0 MiB available; lower value_size, "
            "keyspace (a smaller one is pre-encoded), connections or pipeline"
        )
        assert driver.worker_pids() == []
        assert driver.state is LoadState.FAILED
    finally:
        driver.close()
    with server.client() as client:
        assert len(client.client_list(_type="normal")) == 1  # this one: no load connected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tls": {"ca": "x"}}, "config: spec.target.tls has unknown field(s): ca"),
        ({"tls": {"ca_file": "/nonexistent/ca.crt"}},
         "config: tls.ca_file /nonexistent/ca.crt: No such file or directory"),
    ],
)
def test_unsupported_options_are_refused_before_any_process_starts(
    driver: BuiltinDriver, change: dict[str, Any], message: str
) -> None:
    spec = make_spec(free_port())
    if "tls" in change:
        spec["target"]["tls"] = change["tls"]
    else:
        spec["params"].update(change)
    with pytest.raises(DriverError) as refused:
        driver.prepare(parse_spec(json.dumps(spec)))
    assert str(refused.value) == message
    assert driver.worker_pids() == []


# --- through a real agent --------------------------------------------------------------------


@dataclass
class AgentProcess:
    proc: subprocess.Popen[bytes]
    token: str
    port: int
    state_dir: Path

    def log(self) -> str:
        return (self.state_dir / protocol.LOG_FILE).read_text(encoding="utf-8")

    def link(self) -> AgentLink:
        return AgentLink.connect_tcp("testhost", self.port, self.token)

    def workers(self) -> list[int]:
        with contextlib.suppress(psutil.NoSuchProcess):
            return [child.pid for child in psutil.Process(self.proc.pid).children()]
        return []


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[[], AgentProcess]]:
    started: list[AgentProcess] = []

    def start() -> AgentProcess:
        state_dir = tmp_path / f"agent{len(started)}"
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env["PYTHONPATH"] = str(REPO)
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "serve", "--watchdog", "30",
             "--state-dir", str(state_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=tmp_path,
            bufsize=0,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        token = new_token()
        proc.stdin.write(startup_line(token))
        proc.stdin.flush()
        ready = parse_ready_line(read_fd_line(proc.stdout.fileno(), DEADLINE).decode(), "testhost")
        handle = AgentProcess(proc, token, ready.port, state_dir)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        workers = handle.workers()
        if handle.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(handle.proc.pid, signal.SIGKILL)
            handle.proc.wait(timeout=DEADLINE)
        for pid in workers:
            if not process_gone(pid):
                os.kill(pid, signal.SIGKILL)
        for pipe in (handle.proc.stdin, handle.proc.stdout):
            if pipe is not None:
                pipe.close()


def test_a_load_through_the_agent_outlives_the_link_that_prepared_it(
    start_agent: Callable[[], AgentProcess], redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server()
    agent = start_agent()
    spec = make_spec(server.port, processes=2, connections=4, pipeline=4, preload=True)
    with agent.link() as first:
        assert first.load_progress().state == "idle"
        prepared = first.prepare_load(json.dumps(spec))
        assert (prepared.driver, prepared.processes, prepared.connections, prepared.pipeline) \
            == ("builtin", 2, 4, 4)
        assert prepared.interpreter.startswith("CPython") and "hiredis" in prepared.driver_version
        assert first.load_progress().state == "prepared"
    workers = agent.workers()
    assert len(workers) == 2
    # The agent thread that served the first link ends once it logs the close; the load
    # processes must not die with it (PR_SET_PDEATHSIG follows the thread that started them).
    poll_until(lambda: "connection closed" in agent.log(), DEADLINE, "the first link to end")
    with agent.link() as link:
        assert all(not process_gone(pid) for pid in workers)
        t0_ns = link.clock() + START_MARGIN_NS
        assert link.start_load(t0_ns) == t0_ns
        seen: list[Any] = []

        def finished() -> bool:
            progress = link.load_progress()
            seen.append(progress)
            return progress.state == "finished"

        poll_until(finished, DEADLINE, "the load to finish")
        written = link.load_report()
        assert link.load_report() == written  # asking again gives the same report
        poll_until(lambda: link.status().children == 0, DEADLINE, "load processes to exit")
    live = [p for p in seen if p.interval is not None]
    assert live and all(p.ops_per_sec and p.ops_per_sec > 0 for p in live)
    assert all(p.p99_usec and p.p99_usec > 0 for p in live)
    assert {p.phase for p in live} <= {"warmup", "measure"}
    report = reports.agent_report(written, "testhost")
    assert report.t0_ns == t0_ns
    assert stats.common_window([report]) == [1, 2, 3]
    assert report.errors == {}


def test_a_driver_refusal_is_one_line_on_the_coordinator(
    start_agent: Callable[[], AgentProcess], redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server(password=PASSWORD)
    agent = start_agent()
    with agent.link() as link:
        with pytest.raises(LoadError) as refused:
            link.prepare_load(json.dumps(make_spec(server.port, password=WRONG_PASSWORD)))
        assert refused.value.kind == "auth"
        assert str(refused.value) == (
            f"testhost: cannot authenticate to 127.0.0.1:{server.port}: "
            "WRONGPASS invalid username-password pair or user is disabled."
        )
        with pytest.raises(LoadError) as out_of_order:
            link.start_load(time.time_ns())
        assert out_of_order.value.kind == "state"
        assert str(out_of_order.value) == "testhost: cannot start: no load is prepared"
        assert link.load_progress().state == "idle"
        assert link.status().children == 0
        assert link.hello().pid == agent.proc.pid  # the link is still usable


def test_load_processes_die_when_the_agent_is_killed(
    start_agent: Callable[[], AgentProcess], redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server()
    agent = start_agent()
    with agent.link() as link:
        link.prepare_load(json.dumps(make_spec(server.port, processes=2, duration_s=30.0)))
        link.start_load(link.clock() + START_MARGIN_NS)
        poll_until(lambda: link.load_progress().interval is not None, DEADLINE, "the load to run")
        workers = agent.workers()
        assert len(workers) == 2
        os.kill(agent.proc.pid, signal.SIGKILL)  # the agent only: not its process group
        agent.proc.wait(timeout=DEADLINE)
    poll_until(
        lambda: all(process_gone(pid) for pid in workers),
        DEADLINE,
        "load processes to die with the agent",
    )


@pytest.mark.parametrize("how", ["stop", "stdin"])
def test_an_agent_shutting_down_takes_its_load_along(
    start_agent: Callable[[], AgentProcess], redis_server: Callable[..., RedisServer], how: str
) -> None:
    server = redis_server()
    agent = start_agent()
    link = agent.link()
    link.prepare_load(json.dumps(make_spec(server.port, processes=2, duration_s=30.0)))
    link.start_load(link.clock() + START_MARGIN_NS)
    poll_until(lambda: link.load_progress().interval is not None, DEADLINE, "the load to run")
    workers = agent.workers()
    assert len(workers) == 2
    if how == "stop":
        link.stop()
    else:  # the coordinator's SSH session ended
        assert agent.proc.stdin is not None
        agent.proc.stdin.close()
        link.close()
    assert agent.proc.wait(timeout=DEADLINE) == 0
    for pid in workers:
        assert process_gone(pid)


def test_stop_load_through_the_agent_reports_a_cut_interval(
    start_agent: Callable[[], AgentProcess], redis_server: Callable[..., RedisServer]
) -> None:
    server = redis_server()
    agent = start_agent()
    with agent.link() as link:
        assert link.stop_load() is LoadState.IDLE  # nothing to stop: harmless
        link.prepare_load(json.dumps(make_spec(server.port, duration_s=30.0)))
        link.start_load(link.clock() + START_MARGIN_NS)
        poll_until(lambda: link.load_progress().interval is not None, DEADLINE, "the load to run")
        assert link.stop_load() is LoadState.STOPPED
        assert link.load_progress().state == "stopped"
        report = reports.agent_report(link.load_report(), "testhost")
        assert report.intervals[-1].complete is False
        poll_until(lambda: link.status().children == 0, DEADLINE, "load processes to exit")


def test_a_coordinator_timeout_on_prepare_closes_the_link(
    start_agent: Callable[[], AgentProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    from coordinator.remote import agent_calls

    monkeypatch.setattr(agent_calls, "LOAD_PREPARE_TIMEOUT", 0.5)
    agent = start_agent()
    with socket.socket() as silent:  # accepts connections, never answers PING
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        link = agent.link()
        with pytest.raises(
            AgentLost, match=r"^testhost: no answer to prepare_load\(\) within 0.5 s"
        ):
            link.prepare_load(json.dumps(make_spec(silent.getsockname()[1])))
        assert link.closed  # (closing waits for the busy agent's answer to rpyc's CLOSE)


# --- the end-of-phase drain ------------------------------------------------------------------


@pytest.mark.parametrize("rate", [None, 10_000_000])  # closed loop; open, far behind schedule
def test_the_drain_ends_once_the_last_replies_are_in_not_at_its_budget(
    driver: BuiltinDriver, redis_server: Callable[..., RedisServer], rate: int | None
) -> None:
    """At the planned end requests are still in flight (an open loop far behind its schedule
    always has some); the drain waits for their replies, not for its budget. With a 120 s
    budget a drain that waited it out would outlast the wait for the load's end."""
    server = redis_server()
    spec = make_spec(server.port, connections=4, pipeline=8, duration_s=1.0, rate=rate)
    spec["timeline"]["drain_ns"] = 120 * 10**9
    report = run_load(driver, spec)
    assert report.errors == {}  # every reply came: none was counted as a timeout
    assert report.intervals[-1].complete
    assert report.stopped_ns - report.t0_ns < (spec["timeline"]["drain_ns"]
                                               + parse_spec(json.dumps(spec)).timeline.total_ns)


def test_a_stop_ends_the_drain_at_once_and_cuts_the_last_interval(
    driver: BuiltinDriver, redis_server: Callable[..., RedisServer]
) -> None:
    """A server paused over the planned end keeps the load draining (10 s by default); a
    stop from the agent (Ctrl-C) must not wait for the pause, nor count timeouts."""
    server = redis_server()
    pause_ms = 4000
    spec = make_spec(server.port, connections=3, pipeline=2, duration_s=1.0)
    parsed = parse_spec(json.dumps(spec))
    driver.prepare(parsed)
    t0_ns = time.time_ns() + START_MARGIN_NS
    planned_end_ns = t0_ns + parsed.timeline.total_ns
    driver.start_at(t0_ns)
    wait_for_interval(driver, 0)
    with server.client() as client:
        paused_ns = time.time_ns()
        client.client_pause(pause_ms)
    if paused_ns >= planned_end_ns:
        pytest.fail("the pause came after the planned end (machine too busy?)")
    poll_until(lambda: time.time_ns() > planned_end_ns, DEADLINE, "the planned end")
    assert driver.state is LoadState.RUNNING  # draining: the paused replies are awaited
    driver.stop()
    assert driver.state is LoadState.STOPPED
    report = driver.report()
    last = report.intervals[-1]
    assert last.index == parsed.timeline.intervals - 1  # reported once, by the drain
    assert [i.index for i in report.intervals] == list(range(parsed.timeline.intervals))
    assert last.complete is False
    assert report.errors == {}
    assert report.stopped_ns < paused_ns + pause_ms * 1_000_000  # it did not wait the pause out
