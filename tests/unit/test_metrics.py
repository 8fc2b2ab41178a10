"""The agent's metrics sampler (agent/metrics/) and their stored form (coordinator/core/metrics).

Parsers and deltas are pure and tested on /proc texts; the sampler runs for real on this host
(its own /proc), watching real processes that exit under it; cgroup hierarchies are built in a
temporary directory (v1 and v2 files as the kernel writes them).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import messages
from agent.metrics import cgroup, procfs
from agent.metrics.deltas import HostSnapshot, cpu_share, interval_between, process_cpu
from agent.metrics.model import MetricsPlan, MetricsReport, RedisTarget
from agent.metrics.sampler import MetricsSampler, Snapshotter
from agent.metrics.server import parse_info, take_info
from coordinator.core.metrics import host_metrics, unsampled
from coordinator.inventory.schema import Inventory
from coordinator.run.loadspec import phases
from coordinator.run.metrics_plan import host_roles, metrics_plan, servers_by_host
from tests.helpers import poll_until, process_gone

STAT = """cpu  100 5 50 800 10 1 4 30 0 0
cpu0 50 5 25 400 5 1 2 12 0 0
cpu1 50 0 25 400 5 0 2 18 0 0
intr 1 2 3
ctxt 12345
btime 1
"""
NET_DEV = (
    "Inter-|   Receive                                  |  Transmit\n"
    " face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo"
    " colls carrier compressed\n"
    "    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n"
    "  eth0: 5000000 4000 0 0 0 0 0 0 2000000 3000 0 0 0 0 0 0\n"
)
SNMP = """Ip: Forwarding DefaultTTL
Ip: 1 64
Tcp: RtoAlgorithm ActiveOpens RetransSegs InErrs
Tcp: 1 20 7 0
"""
NETSTAT = """TcpExt: SyncookiesSent ListenOverflows ListenDrops
TcpExt: 0 2 3
IpExt: InNoRoutes
IpExt: 0
"""


def test_proc_texts_are_read_into_counters() -> None:
    stat = procfs.parse_stat(STAT)
    assert stat.total.user == 100 and stat.total.steal == 30 and len(stat.cores) == 2
    assert stat.context_switches == 12345
    assert procfs.parse_net_dev(NET_DEV)["eth0"] == procfs.Interface(5000000, 4000, 2000000, 3000)
    assert procfs.tcp_counters(SNMP, NETSTAT) == procfs.TcpCounters(7, 3, 2)
    memory = procfs.parse_meminfo("MemTotal: 1000 kB\nMemFree: 10 kB\nMemAvailable: 600 kB\n")
    assert memory == procfs.Memory(1024000, 614400)
    assert procfs.parse_loadavg("0.52 0.40 0.30 1/100 42\n") == 0.52


def test_a_process_name_with_spaces_and_parentheses_is_read() -> None:
    line = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 3 0 1"
    assert procfs.parse_process_stat(line) == ("my (odd) name", 280)


def fake_process(proc: Path, pid: int, stat_ticks: int, schedstat_ns: int | None,
                 threads: dict[int, tuple[int, int | None]]) -> None:
    """A /proc/<pid> tree with its stat, its schedstat (None: none) and its threads'."""

    def write(directory: Path, ticks: int, ns: int | None) -> None:
        directory.mkdir(parents=True)
        fields = ["S", *["0"] * 10, str(ticks), "0"]
        (directory / "stat").write_text(f"{pid} (load) {' '.join(fields)}\n")
        if ns is not None:
            (directory / "schedstat").write_text(f"{ns} 12345 67\n")

    write(proc / str(pid), stat_ticks, schedstat_ns)
    for tid, (ticks, ns) in threads.items():
        write(proc / str(pid) / "task" / str(tid), ticks, ns)


def test_a_process_cpu_time_is_its_clock_and_its_threads_their_schedstat(
        tmp_path: Path) -> None:
    fake_process(tmp_path, 7, 9, 99_500_000, {7: (9, 99_000_000), 8: (0, 500_000)})
    clock = {7: 120_000_000}.get  # a thread that ended ran the rest: not in any schedstat
    assert procfs.read_process(7, tmp_path, clock) == procfs.ProcessTimes(
        7, "load", 120_000_000, {7: 99_000_000, 8: 500_000})


def test_without_a_clock_or_schedstat_cpu_times_come_from_the_ticks(tmp_path: Path) -> None:
    fake_process(tmp_path, 7, 9, None, {7: (9, None)})
    tick_ns = 1_000_000_000 // procfs.CLOCK_TICKS
    assert procfs.read_process(7, tmp_path, no_clock) == procfs.ProcessTimes(
        7, "load", 9 * tick_ns, {7: 9 * tick_ns})


def no_clock(pid: int) -> int | None:
    return None


def test_a_process_gone_is_none_and_a_thread_gone_is_left_out(tmp_path: Path) -> None:
    assert procfs.read_process(7, tmp_path, no_clock) is None
    fake_process(tmp_path, 7, 9, 1_000, {7: (9, 1_000)})
    (tmp_path / "7" / "task" / "8").mkdir()  # listed, then gone before its stat was read
    assert procfs.read_process(7, tmp_path, {7: 2_000}.get) == procfs.ProcessTimes(
        7, "load", 2_000, {7: 1_000})


def test_this_process_cpu_time_counts_every_thread_it_ran_ended_ones_included() -> None:
    spinner = threading.Thread(target=spin_for_cpu, args=(0.3,))
    spinner.start()
    spinner.join()  # returns before the kernel's thread is gone: wait for that too
    poll_until(lambda: not Path(f"/proc/self/task/{spinner.native_id}").exists(), 10.0,
               "the spinning thread to end")
    times = procfs.read_process(os.getpid())
    assert times is not None and os.getpid() in times.threads
    assert times.cpu_ns <= time.process_time_ns()  # the same clock, read after
    # the live threads' times were read first; the ended thread's is in the process's alone
    assert times.cpu_ns - sum(times.threads.values()) >= 300_000_000


def test_a_zombie_process_cpu_time_is_read_until_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", SPIN_THEN_EXIT])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
        times = procfs.read_process(child.pid)
        assert times is not None and times.cpu_ns >= 200_000_000
    finally:
        child.wait()
    assert procfs.process_clock_ns(child.pid) is None
    assert procfs.read_process(child.pid) is None


SPIN_THEN_EXIT = ("import time\nend = time.process_time() + 0.2\n"
                  "while time.process_time() < end: pass")


def spin_for_cpu(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_redis_info_text_is_read_by_section() -> None:
    text = "# Server\r\nredis_version:7.0.15\r\nprocess_id:12\r\n\r\n# Commandstats\r\n" \
           "cmdstat_get:calls=3,usec=5,usec_per_call=1.67\r\n"
    assert parse_info(text) == {
        "server": {"redis_version": "7.0.15", "process_id": "12"},
        "commandstats": {"cmdstat_get": "calls=3,usec=5,usec_per_call=1.67"},
    }


ticks = st.integers(min_value=0, max_value=10**6)


@given(st.lists(ticks, min_size=8, max_size=8), st.lists(ticks, min_size=8, max_size=8))
def test_cpu_shares_are_percentages_of_the_elapsed_ticks(a: list[int], b: list[int]) -> None:
    before = procfs.CpuTicks(*a)
    after = procfs.CpuTicks(*[x + y for x, y in zip(a, b, strict=True)])
    share = cpu_share(before, after)
    parts = [share.user, share.system, share.irq, share.softirq, share.steal, share.iowait,
             share.idle]
    assert all(0.0 <= part <= 100.0 + 1e-9 for part in parts)
    assert sum(parts) == pytest.approx(100.0 if sum(b) else 0.0)
    assert 0.0 <= share.busy <= 100.0


def snapshot(time_ns: int, user: int, idle: int, **parts: object) -> HostSnapshot:
    stat = procfs.SystemStat(procfs.CpuTicks(user, 0, 0, idle, 0, 0, 0, 0), (), 10)
    return HostSnapshot(time_ns=time_ns, stat=stat, **parts)  # type: ignore[arg-type]


def test_an_interval_is_the_difference_of_its_snapshots() -> None:
    thread = {7: 1_000_000_000, 8: 50_000_000}
    load_before = {7: procfs.ProcessTimes(7, "load", 1_050_000_000, thread)}
    load_after = {7: procfs.ProcessTimes(7, "load", 2_050_000_000,
                                         {7: 1_950_000_000, 8: 100_000_000})}
    quota = cgroup.QuotaCgroup(Path("/sys/fs/cgroup/coord/c1"), "v2", 0.2)
    interval = interval_between(
        snapshot(0, 0, 1000, load_processes=load_before,
                 throttle=cgroup.ThrottleCounters(10, 2, 1000)),
        snapshot(1_000_000_000, 500, 1500, load_processes=load_after,
                 throttle=cgroup.ThrottleCounters(20, 9, 61000)),
        index=3, phase="measure", quota=quota)  # fmt: skip
    assert interval.cpu is not None and interval.cpu.user == 50.0
    (process,) = interval.load_processes
    assert process.cpu_percent == 100.0
    assert (process.hottest_thread, process.hottest_thread_percent) == (7, 95.0)
    assert process.busy_poll_percent is None  # no counter read: not a load process
    assert interval.throttling is not None
    assert (interval.throttling.throttled_periods, interval.throttling.throttled_usec) == (7, 60000)
    assert interval.missing == {"interfaces": "not read", "tcp": "not read",
                                "memory": "not read", "load_average": "not read"}


def test_a_load_process_busy_polling_is_its_counter_over_the_interval() -> None:
    before = procfs.ProcessTimes(7, "load", 1_000_000_000, {7: 1_000_000_000}, spin_ns=100)
    after = procfs.ProcessTimes(7, "load", 1_900_000_000, {7: 1_900_000_000},
                                spin_ns=600_000_100)
    interval = interval_between(snapshot(0, 0, 1000, load_processes={7: before}),
                                snapshot(2_000_000_000, 500, 1500, load_processes={7: after}),
                                index=0, phase="measure", quota=None)
    (process,) = interval.load_processes
    assert (process.cpu_percent, process.busy_poll_percent) == (45.0, 30.0)


def test_a_server_process_keeps_the_ports_it_listens_on() -> None:
    before = {7: procfs.ProcessTimes(7, "redis-server", 0, {7: 0}, ports=(6379,))}
    after = {7: procfs.ProcessTimes(7, "redis-server", 500_000_000, {7: 500_000_000},
                                    ports=(6379,))}
    interval = interval_between(snapshot(0, 0, 1000, server_processes=before),
                                snapshot(1_000_000_000, 500, 1500, server_processes=after),
                                index=0, phase="measure", quota=None)
    (process,) = interval.server_processes
    assert (process.ports, process.cpu_percent) == ((6379,), 50.0)


def test_the_threads_that_did_work_are_counted() -> None:
    """Over 1 s: 900, 300 and 50 ms of CPU (busy) and 10 ms (under 5 % of a core: idle); a
    thread that started in the interval counts from zero."""
    before = procfs.ProcessTimes(7, "dragonfly", 0, {7: 0, 8: 0, 9: 0, 10: 0})
    after = procfs.ProcessTimes(7, "dragonfly", 1_290_000_000, {
        7: 900_000_000, 8: 300_000_000, 9: 10_000_000, 10: 30_000_000, 11: 50_000_000})
    record = process_cpu(before, after, 1.0)
    assert (record.busy_threads, record.hottest_thread, record.threads) == (3, 7, 5)


HASHING_THREADS = """
import hashlib, sys, threading
data = bytes(1 << 20)
def hash_for_ever():
    while True:
        hashlib.sha256(data).digest()  # releases the GIL: both threads work at once
for _ in range(2):
    threading.Thread(target=hash_for_ever, daemon=True).start()
sys.stdin.read()
"""


def test_a_real_process_with_two_working_threads_and_an_idle_one_counts_two() -> None:
    """A multi-threaded server's shape, read from this host's /proc as the sampler reads a
    server process: two threads hashing, the main one waiting on its stdin."""
    child = subprocess.Popen([sys.executable, "-c", HASHING_THREADS], stdin=subprocess.PIPE)
    try:
        poll_until(lambda: len(list(Path(f"/proc/{child.pid}/task").iterdir())) == 3, 30.0,
                   "the hashing threads to start")
        before = procfs.read_process(child.pid)
        began = time.monotonic()
        assert before is not None

        def both_worked() -> bool:
            now = procfs.read_process(child.pid)
            used = sorted(cpu - before.threads.get(tid, 0) for tid, cpu in (
                now.threads.items() if now is not None else ()))
            return len(used) == 3 and used[-2] >= 100_000_000

        poll_until(both_worked, 30.0, "both hashing threads to use 100 ms of CPU")
        after = procfs.read_process(child.pid)
        assert after is not None
        record = process_cpu(before, after, time.monotonic() - began)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.kill()
        child.wait()
    assert (record.threads, record.busy_threads) == (3, 2)
    assert record.hottest_thread != child.pid  # the main thread only waited


def test_the_snapshot_reads_each_load_process_busy_poll_counter() -> None:
    snapshotter = Snapshotter(None, spun_ns={os.getpid(): 1234}.get)
    snapshotter.load_pids = {os.getpid()}
    snapshotter.server_ports = {os.getpid(): (6379, 8000)}
    taken = snapshotter.read()
    assert taken.load_processes[os.getpid()].spin_ns == 1234
    assert taken.server_processes[os.getpid()].spin_ns is None
    assert taken.server_processes[os.getpid()].ports == (6379, 8000)
    assert taken.load_processes[os.getpid()].ports == ()


def test_a_part_that_could_not_be_read_is_missing_with_its_reason() -> None:
    before = HostSnapshot(time_ns=0, problems={"stat": "PermissionError: /proc/stat"})
    after = HostSnapshot(time_ns=1, load_processes={1: procfs.ProcessTimes(1, "x", 0, {})})
    interval = interval_between(before, after, index=0, phase="warmup", quota=None)
    assert interval.cpu is None
    assert interval.missing["cpu"] == "PermissionError: /proc/stat"
    assert interval.missing["load_processes.started"] == "process(es) 1 started"
    assert interval.throttling is None and "throttling" not in interval.missing


def cgroup_tree(tmp_path: Path, version: str, quota: str | None) -> tuple[Path, Path, Path]:
    """A cgroup hierarchy with this process in ``/lab/c1``: (own, mounts, mount)."""
    mount = tmp_path / "cgroup"
    leaf = mount / "lab" / "c1"
    leaf.mkdir(parents=True)
    own, mounts = tmp_path / "own", tmp_path / "mounts"
    if version == "v2":
        (mount / "cgroup.controllers").write_text("cpu io memory\n")
        own.write_text("0::/lab/c1\n")
        mounts.write_text("")
        (leaf / "cpu.max").write_text("max 100000\n")
        (mount / "lab" / "cpu.max").write_text(f"{quota or 'max'} 100000\n")
        (leaf / "cpu.stat").write_text("usage_usec 5\nnr_periods 40\nnr_throttled 12\n"
                                       "throttled_usec 3000\n")
    else:
        own.write_text("5:cpu,cpuacct:/lab/c1\n4:memory:/lab/c1\n")
        mounts.write_text(f"cgroup {mount} cgroup rw,nosuid,cpu,cpuacct 0 0\n")
        for directory in (leaf, mount / "lab"):
            (directory / "cpu.cfs_quota_us").write_text("-1\n")
            (directory / "cpu.cfs_period_us").write_text("100000\n")
        if quota is not None:
            (leaf / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        (leaf / "cpu.stat").write_text("nr_periods 40\nnr_throttled 12\nthrottled_time 3000000\n")
    return own, mounts, mount


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_closest_cgroup_with_a_quota_is_found_and_its_throttling_read(
    tmp_path: Path, version: str
) -> None:
    own, mounts, mount = cgroup_tree(tmp_path, version, "20000")
    found = cgroup.find_quota_cgroup(own, mounts, mount)
    assert found is not None
    assert (found.version, found.quota_cores) == (version, 0.2)
    expected = mount / "lab" if version == "v2" else mount / "lab" / "c1"
    assert found.path == expected
    if version == "v1":
        assert cgroup.read_throttling(found) == cgroup.ThrottleCounters(40, 12, 3000)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_host_without_a_cpu_quota_has_nothing_to_throttle(tmp_path: Path, version: str) -> None:
    own, mounts, mount = cgroup_tree(tmp_path, version, None)
    assert cgroup.find_quota_cgroup(own, mounts, mount) is None
    assert cgroup.find_quota_cgroup(tmp_path / "absent", mounts, mount) is None


def test_a_cgroup_without_its_filesystem_is_said_to_be_unseen(tmp_path: Path) -> None:
    own, mounts, mount = cgroup_tree(tmp_path, "v1", "20000")
    assert cgroup.unseen_cgroup(own, mounts, mount) is None  # mounted: readable
    mounts.write_text("sysfs /sys sysfs rw 0 0\n")  # what `ip netns exec` leaves
    assert cgroup.find_quota_cgroup(own, mounts, mount) is None
    reason = cgroup.unseen_cgroup(own, mounts, mount)
    assert reason is not None and "cgroup cpu,cpuacct:/lab/c1" in reason
    own.write_text("1:cpu:/\n0::/\n")
    assert cgroup.unseen_cgroup(own, mounts, mount) is None  # the root cgroup: no quota


def busy_process() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run_sampler(sampler: MetricsSampler, until: int) -> MetricsReport:
    """Sample until ``until`` intervals are in, then finish."""
    sampler.start()
    sampler.align(time.time_ns() + 300_000_000)  # T0 ahead, as the coordinator chooses it
    poll_until(lambda: len(sampler._intervals) >= until, 60, f"{until} intervals sampled")
    return sampler.finish()


def test_the_sampler_keeps_going_when_a_watched_process_exits(tmp_path: Path) -> None:
    doomed, lasting = busy_process(), busy_process()
    plan = MetricsPlan(interval_ns=50_000_000, warmup_intervals=1, intervals=100)
    sampler = MetricsSampler(plan, find_load_pids=lambda: {doomed.pid, lasting.pid})
    try:
        sampler.start()
        sampler.align(time.time_ns())
        poll_until(lambda: len(sampler._intervals) >= 3, 60, "3 intervals")
        doomed.kill()
        doomed.wait()
        poll_until(lambda: process_gone(doomed.pid), 30, "the watched process to go")
        count = len(sampler._intervals)
        poll_until(lambda: len(sampler._intervals) >= count + 3, 60, "3 more intervals")
        report = sampler.finish()
    finally:
        lasting.kill()
        lasting.wait()
    assert "sampler" not in report.missing
    exits = [i for i in report.intervals if "load_processes.exited" in i.missing]
    assert len(exits) == 1 and str(doomed.pid) in exits[0].missing["load_processes.exited"]
    after = report.intervals[-2]
    assert [p.pid for p in after.load_processes] == [lasting.pid]
    assert any(p.cpu_percent > 0 for i in report.intervals for p in i.load_processes)


def test_the_sampler_on_a_host_without_a_quota_records_no_throttling() -> None:
    plan = MetricsPlan(interval_ns=20_000_000, warmup_intervals=0, intervals=3)
    sampler = MetricsSampler(plan, snapshotter=Snapshotter(quota=None),
                             find_load_pids=set)
    report = run_sampler(sampler, 4)
    assert report.missing == {}
    indices = [i.index for i in report.intervals]
    # on the grid: a sampler late by a whole interval (20 ms, a busy host) skips a boundary
    assert indices[:2] == [-1, 0] and indices == sorted(set(indices))
    assert all(i.throttling is None and "throttling" not in i.missing for i in report.intervals)
    assert all(i.cpu is not None and i.cores for i in report.intervals)
    assert messages.from_text(MetricsReport, messages.to_text(report)) == report


class BrokenSnapshotter(Snapshotter):
    def __init__(self) -> None:
        super().__init__(quota=None)
        self.reads = 0

    def read(self) -> HostSnapshot:
        self.reads += 1
        if self.reads > 2:
            raise RuntimeError("broken reader")
        return super().read()


def test_a_sampler_failure_is_recorded_not_raised() -> None:
    plan = MetricsPlan(interval_ns=20_000_000, warmup_intervals=0, intervals=3)
    broken = BrokenSnapshotter()
    sampler = MetricsSampler(plan, snapshotter=broken, find_load_pids=set)
    sampler.start()
    sampler.align(time.time_ns())
    poll_until(lambda: broken.reads > 2, 30, "the reader to break")
    report = sampler.finish()
    assert report.missing["sampler"] == "sampling stopped: RuntimeError: broken reader"
    assert report.missing["last_interval"].startswith("RuntimeError: broken reader")
    assert len(report.intervals) == 1


def test_the_report_is_stored_per_host_per_interval() -> None:
    plan = MetricsPlan(interval_ns=20_000_000, warmup_intervals=1, intervals=2)
    report = run_sampler(MetricsSampler(plan, snapshotter=Snapshotter(quota=None),
                                        find_load_pids=set), 3)
    stored = host_metrics("client1", ["client"], report)
    assert stored.interval_ms == 20.0
    assert [i.phase for i in stored.intervals][:3] == ["before", "warmup", "measure"]
    first = stored.interval(0)
    assert first is not None and first.cpu is not None
    assert first.cpu.busy == pytest.approx(100 - first.cpu.idle - first.cpu.iowait)
    assert unsampled("server1", ["server"], 10**9, "no agent").missing == {"all": "no agent"}


def test_the_server_host_watches_the_target_and_clients_only_their_load() -> None:
    inventory = Inventory.model_validate({
        "name": "lab",
        "hosts": [{"name": "s1", "address": "198.18.0.2", "roles": ["server"]},
                  {"name": "c1", "address": "198.18.0.3", "roles": ["client"]}],
        "servers": [{"name": "redis", "host": "s1", "port": 6390, "password": "pw"}],
    })  # fmt: skip
    server, client = inventory.hosts
    timeline = phases(inventory)
    plan = metrics_plan(inventory, server, timeline, {"redis": "pw"})
    assert plan.server_ports == (6390,)
    assert plan.redis is not None and (plan.redis.address, plan.redis.password) == ("198.18.0.2",
                                                                                    "pw")
    assert "pw" not in repr(plan)
    assert metrics_plan(inventory, client, timeline, {"redis": "pw"}) == MetricsPlan(
        timeline.interval_ns, timeline.warmup_intervals, timeline.intervals)
    assert (host_roles(inventory, server), host_roles(inventory, client)) == (["server"],
                                                                              ["client"])


def test_an_http_server_alone_is_watched_by_its_port_and_asked_no_redis_info() -> None:
    inventory = Inventory.model_validate({
        "name": "lab",
        "hosts": [{"name": "s1", "address": "198.18.0.2", "roles": ["server"]},
                  {"name": "c1", "address": "198.18.0.3", "roles": ["client"]}],
        "servers": [{"name": "model", "host": "s1", "port": 8000, "kind": "http"}],
        "benchmark": {"driver": "http", "http": {"requests": [{"name": "ok", "path": "/"}]}},
    })  # fmt: skip
    plan = metrics_plan(inventory, inventory.hosts[0], phases(inventory), {"model": None})
    assert plan.server_ports == (8000,) and plan.redis is None


def test_two_servers_on_one_host_are_watched_by_their_ports_and_named_by_them() -> None:
    inventory = Inventory.model_validate({
        "name": "lab",
        "hosts": [{"name": "s1", "address": "198.18.0.2", "roles": ["server"]},
                  {"name": "c1", "address": "198.18.0.3", "roles": ["client"]},
                  {"name": "c2", "address": "198.18.0.4", "roles": ["client"]}],
        "servers": [{"name": "redis", "host": "s1", "port": 6379},
                    {"name": "model", "host": "s1", "port": 8000, "kind": "http"}],
        "benchmark": {
            "targets": [{"server": "redis", "driver": "builtin", "clients": ["c1"]},
                        {"server": "model", "driver": "http", "clients": ["c2"]}],
            "http": {"requests": [{"name": "ok", "path": "/"}]}},
    })  # fmt: skip
    plan = metrics_plan(inventory, inventory.hosts[0], phases(inventory), {})
    assert plan.server_ports == (6379, 8000)
    assert plan.redis is not None and plan.redis.port == 6379
    assert servers_by_host(inventory) == {"s1": {6379: "redis", 8000: "model"}}


def test_info_from_a_server_that_does_not_speak_resp_is_a_problem_not_a_crash() -> None:
    """An HTTP server answers INFO with "HTTP/1.1 400": hiredis's protocol error once stopped
    the whole sampler ("sampling stopped"), losing the host's metrics."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def answer_http() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        server = threading.Thread(target=answer_http, daemon=True)
        server.start()
        port = listener.getsockname()[1]
        info = take_info(RedisTarget("127.0.0.1", port, None, None, False), "start")
        server.join(10)
    assert info.sections == {}
    assert info.problem is not None and "does not answer in RESP" in info.problem
