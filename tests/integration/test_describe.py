"""`coord describe` on real labs: every host with its CPU, memory, kernel, interface, tools and
the CPU quota `lab up --client-cpu` set; `coord run` records the platform; `coord describe
--diff` of two runs on labs with different quotas shows the quota.

Needs root. Two labs, one after the other: ``dsc`` (198.18.205.0/24, clients at 0.5 CPU) and
``dsc2`` (198.18.215.0/24, clients at 0.3 CPU), always torn down.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.core.platform import PlatformRecord
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.results import load_results
from tests.helpers import module_lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
QUICK = ["--repetitions", "1", "--warmup", "1s", "--duration", "1s",
         "--set", "benchmark.builtin.connections=2", "--set", "benchmark.builtin.processes=1",
         "--set", "benchmark.builtin.keyspace=10000",  # a small request pool: quota'd clients
         "--no-baseline"]  # test_baseline.py measures baselines


def coord(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """One quick run on each lab; their results directories, by lab."""
    out: dict[str, Path] = {}
    for name, subnet, cpu in (("dsc", "198.18.205.0/24", 0.5), ("dsc2", "198.18.215.0/24", 0.3)):
        directory = tmp_path_factory.mktemp(name)
        spec = LabSpec(name=name, clients=2, subnet=subnet, client_cpu=cpu)
        with contextlib.contextmanager(module_lab)(spec, directory) as lab:
            if name == "dsc":
                out["describe"] = describe_lab(lab, directory)
            result = coord("run", "-i", str(lab.inventory_path), "--out",
                           str(directory / "results"), *QUICK)
            assert result.returncode == 0, result.stderr
            out[name] = directory / "results"
    yield out


def describe_lab(lab: LabStatus, directory: Path) -> Path:
    """`coord describe` as a table and as JSON; the table's text, the JSON in a file."""
    table = coord("describe", "-i", str(lab.inventory_path))
    assert table.returncode == 0, table.stderr
    as_json = coord("describe", "-i", str(lab.inventory_path), "--json")
    assert as_json.returncode == 0, as_json.stderr
    (directory / "describe.txt").write_text(table.stdout)
    (directory / "describe.json").write_text(as_json.stdout)
    return directory


def test_describe_lists_every_host_with_its_platform(runs: dict[str, Path]) -> None:
    text = (runs["describe"] / "describe.txt").read_text()
    header = next(line for line in text.splitlines() if "client1" in line)
    assert "client2" in header and "server" in header
    for label in ("CPU", "memory", "kernel", "eth0 speed", "eth0 MTU", "CPU quota",
                  "redis-server", "netperf"):
        assert any(line.startswith(f"│ {label} ") for line in text.splitlines()), label
    platform = PlatformRecord.model_validate_json((runs["describe"] / "describe.json").read_text())
    hosts = {record.host: record for record in platform.hosts}
    assert sorted(hosts) == ["client1", "client2", "server"]
    for name, record in hosts.items():
        assert record.cpu_model and record.threads and record.memory_bytes, name
        assert record.kernel.startswith("Linux "), name
        eth0 = next(interface for interface in record.interfaces if interface.name == "eth0")
        assert (eth0.speed_mbps, eth0.mtu) == (10000, 1500), name  # veth
        versions = {tool.name: tool.version for tool in record.tools}
        assert versions["redis-server"] and versions["netperf"], name
    assert hosts["client1"].cpu_quota_cores == hosts["client2"].cpu_quota_cores == 0.5
    assert hosts["client1"].cpu_cgroup == "v1 /dsc-lab/client1" or \
        hosts["client1"].cpu_cgroup.startswith("v2 ")
    assert hosts["server"].cpu_quota_cores is None
    assert "0.5 cores" in text
    (server,) = platform.servers
    assert server.described_by == "client1"
    assert server.info["redis_version"]
    assert set(server.config) == {"io-threads", "appendonly", "save", "maxmemory",
                                  "maxmemory-policy", "hz"}


def test_run_records_the_platform_and_the_diff_shows_the_quota(runs: dict[str, Path]) -> None:
    first, second = load_results(runs["dsc"]), load_results(runs["dsc2"])
    assert first.platform is not None and second.platform is not None
    assert {h.host: h.cpu_quota_cores for h in first.platform.hosts} == {
        "client1": 0.5, "client2": 0.5, "server": None}
    result = coord("describe", "--diff", str(runs["dsc"]), str(runs["dsc2"] / "results.json"),
                   "--json")
    assert result.returncode == 0, result.stderr
    differences = {(d["subject"], d["fact"]): (d["before"], d["after"])
                   for d in json.loads(result.stdout)}
    assert differences[("host client1", "CPU quota")] == (
        "0.5 cores (v1 /dsc-lab/client1)", "0.3 cores (v1 /dsc2-lab/client1)")
    assert ("host client2", "CPU quota") in differences
    table = coord("describe", "--diff", str(runs["dsc"]), str(runs["dsc2"]))
    assert table.returncode == 0, table.stderr
    assert "CPU quota" in table.stdout and "0.3 cores" in table.stdout


def test_describe_without_an_inventory_or_with_both_is_one_line() -> None:
    result = coord("describe")
    assert (result.returncode, result.stderr.count("\n")) == (2, 1), result.stderr
    result = coord("describe", "-i", "x.yaml", "--diff", "a", "b")
    assert (result.returncode, result.stderr.strip()) == (2, "give --inventory or --diff, not both")
