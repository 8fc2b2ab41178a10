"""System metrics of a real run on a lab, and `coord lab up --server-cpu`.

Needs root. One lab (``smp`` on 198.18.202.0/24) whose client hosts are held to 0.2 of a core
(``--client-cpu 0.2``) and whose server host (sshd and redis-server) to 0.2 as well
(``--server-cpu 0.2``), built once for the module and always torn down.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.core.metrics import HostMetrics
from coordinator.inventory.loader import load_inventory
from coordinator.lab import cgroups as lab_cgroups
from coordinator.lab import system as lab_sys
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.lab.plan import LabPaths
from coordinator.run.runner import run_benchmark
from tests.helpers import MeasureView, lab_redis, module_lab
from tests.integration.test_lab import ssh

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

NAME = "smp"
SUBNET = "198.18.202.0/24"
CPU = 0.2


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    spec = LabSpec(name=NAME, clients=2, subnet=SUBNET, client_cpu=CPU, server_cpu=CPU)
    yield from module_lab(spec, tmp_path_factory.mktemp("metrics"))


def test_a_run_stores_every_hosts_metrics_per_interval(lab: LabStatus, tmp_path: Path) -> None:
    assert lab.healthy, lab.problems
    loaded = load_inventory(lab.inventory_path, [
        "benchmark.repetitions=1", "benchmark.warmup=1s", "benchmark.duration=3s",
        "benchmark.builtin.processes=2", "benchmark.builtin.connections=4",
        "benchmark.builtin.keyspace=10000",  # a small request pool: built at 0.2 of a core
        "baseline.enabled=false",
    ])  # fmt: skip
    outcome = run_benchmark(loaded, tmp_path / "run", MeasureView())
    (repetition,) = outcome.document.repetitions
    by_host: dict[str, HostMetrics] = {metrics.host: metrics for metrics in repetition.metrics}
    assert sorted(by_host) == ["client1", "client2", "server"]
    throttled: dict[str, int] = {}
    for name in ("client1", "client2"):
        client = by_host[name]
        assert client.roles == ["client"]
        # the lab's sshd mounts the cpu cgroup hierarchy in its namespace
        # (`visible_cgroups_argv`): the agent reads its quota and throttling as on a real host
        assert client.missing == {}
        # A boundary the sampler reaches late is skipped (the next interval covers it, and its
        # duration_ms says so): on a busy machine one of the four may be absent, not more.
        sampled = {index: client.interval(index) for index in range(4)}
        load = [interval for interval in sampled.values() if interval is not None]
        assert len(load) >= 3, client.intervals
        assert all(interval.phase == ("warmup" if index == 0 else "measure")
                   for index, interval in sampled.items() if interval is not None)
        for interval in load:
            assert interval is not None and interval.cpu is not None
            assert "eth0" in interval.interfaces
            # every load process, even in an interval closed after the load's end: an exited
            # one stays unreaped, so readable, until the load is closed
            assert len(interval.load_processes) == 2, interval
        used = [p.cpu_percent for i in load if i for p in i.load_processes]
        assert sum(used) > 0
        throttling = [i.throttling for i in load if i]
        assert all(t is not None and t.quota_cores == CPU and t.cgroup.endswith(name)
                   for t in throttling), throttling
        throttled[name] = sum(t.throttled_periods for t in throttling if t)
    server = by_host["server"]
    assert server.roles == ["server"]
    assert server.missing == {}
    assert all(i.throttling is not None and i.throttling.quota_cores == CPU
               for i in server.intervals)
    # A quota held the load back: a client's, or the server's, which is held to 0.2 of a core
    # too: when it is the bottleneck both clients wait on it without using their 0.2 (seen:
    # no client throttled in a run).
    throttled["server"] = sum(i.throttling.throttled_periods for i in server.intervals
                              if i.throttling is not None)
    assert sum(throttled.values()) > 0, throttled
    measured = [i for i in server.intervals if i.phase == "measure"]
    redis_cpu = [p.cpu_percent for i in measured for p in i.server_processes
                 if p.name == "redis-server"]
    assert len(redis_cpu) >= 2 and sum(redis_cpu) > 0  # one boundary may be skipped, as above
    assert [info.moment for info in server.redis_info] == ["start", "end"]
    start, end = server.redis_info
    assert start.problem is None and end.problem is None
    processed = [int(info.sections["stats"]["total_commands_processed"]) for info in (start, end)]
    assert processed[1] > processed[0]
    assert "used_cpu_user" in end.sections["cpu"] and end.sections["commandstats"]


def test_server_cpu_throttles_redis_and_what_runs_over_ssh(lab: LabStatus) -> None:
    cgroup = lab.cgroups["server"]
    redis_pid = lab_sys.read_pidfile(LabPaths.of(NAME, lab.spec.state_root).redis_pidfile)
    assert redis_pid in lab_cgroups.cgroup_pids(cgroup)
    program = (
        "import time\n"
        "start, cpu = time.monotonic(), time.process_time()\n"
        "while time.monotonic() - start < 1.0: pass\n"
        "print((time.process_time() - cpu) / (time.monotonic() - start))\n"
    )
    result = ssh(lab, "server", f"python3 -c {shlex.quote(program)}")
    assert result.returncode == 0, result.stderr
    ratio = float(result.stdout.strip())
    assert ratio <= 0.35, f"CPU time / wall time was {ratio:.2f} under a 0.2 quota"
    stat = dict(line.split() for line in (cgroup / "cpu.stat").read_text().splitlines())
    throttled = int(stat["nr_throttled"])
    client = lab_redis(lab)
    try:  # a busy script in Redis itself: held back by the server host's quota
        client.eval("local n = 0 for i = 1, 30000000 do n = n + i end return 0", 0)
    finally:
        client.close()
    stat = dict(line.split() for line in (cgroup / "cpu.stat").read_text().splitlines())
    assert int(stat["nr_throttled"]) > throttled
