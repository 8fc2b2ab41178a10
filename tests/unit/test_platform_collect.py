"""The agent's platform collector (agent/platform.py) on trees of its own: what cannot be
read is unknown with the reason, never an exception; the CPU quota is the tightest over the
agent's cgroup and its ancestors. And a server that cannot be reached is unknown too."""

from __future__ import annotations

import socket
from pathlib import Path

from agent.messages import PlatformDescription, ServerProbe, decode, encode
from agent.platform import describe, describe_host, describe_server

FIXTURES = Path(__file__).parents[1] / "fixtures" / "platform"


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_an_empty_tree_gives_unknowns_with_their_reasons(tmp_path: Path) -> None:
    host = describe_host(tmp_path)
    for field in ("cpu_model", "sockets", "cores", "threads", "numa_nodes", "governor",
                  "boost", "memory_bytes", "os_release", "dmi_vendor", "dmi_product",
                  "cpu_quota_cores", "clock_source"):
        assert getattr(host, field) is None, field
        assert host.unknown[field], field
    assert "No such file or directory" in host.unknown["cpu_model"]
    assert "proc/cpuinfo" in host.unknown["cpu_model"]
    assert host.interfaces == ()
    assert host.kernel.startswith("Linux ")


def test_an_unreadable_file_is_unknown_with_why(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").mkdir()  # a directory where a file should be: EISDIR
    host = describe_host(tmp_path)
    assert host.cpu_model is None
    assert "Is a directory" in host.unknown["cpu_model"]


def _lab_like_tree(root: Path, quota_file: str) -> None:
    write(root, "proc/cpuinfo", (FIXTURES / "cpuinfo-xeon-kvm.txt").read_text())
    write(root, "proc/meminfo", (FIXTURES / "meminfo.txt").read_text())
    write(root, "etc/os-release", (FIXTURES / "os-release-debian12.txt").read_text())
    write(root, "proc/self/cgroup", (FIXTURES / "proc-self-cgroup-lab-client.txt").read_text())
    write(root, "proc/self/mounts", (FIXTURES / "proc-mounts-hybrid.txt").read_text())
    cgroup = "sys/fs/cgroup/cpu/dsc-lab/client1"
    write(root, f"{cgroup}/cpu.cfs_quota_us", quota_file)
    write(root, f"{cgroup}/cpu.cfs_period_us", "100000\n")
    write(root, "sys/fs/cgroup/cpu/dsc-lab/cpu.cfs_quota_us", "-1\n")
    write(root, "sys/fs/cgroup/cpu/dsc-lab/cpu.cfs_period_us", "100000\n")
    write(root, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n")
    write(root, "sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n")


def test_the_quota_of_a_lab_client_is_read_from_its_v1_cgroup(tmp_path: Path) -> None:
    _lab_like_tree(tmp_path, (FIXTURES / "cpu.cfs_quota_us-lab-client.txt").read_text())
    host = describe_host(tmp_path)
    assert (host.cpu_quota_cores, host.cpu_cgroup) == (0.5, "v1 /dsc-lab/client1")
    assert (host.cpu_model, host.threads, host.memory_bytes) == (
        "Intel(R) Xeon(R) Processor", 2, 24683656 * 1024)
    assert host.os_release == "Debian GNU/Linux 12 (bookworm)"


def test_the_tightest_quota_over_the_ancestors_wins(tmp_path: Path) -> None:
    _lab_like_tree(tmp_path, "-1\n")
    write(tmp_path, "sys/fs/cgroup/cpu/dsc-lab/cpu.cfs_quota_us", "30000\n")
    host = describe_host(tmp_path)
    assert (host.cpu_quota_cores, host.cpu_cgroup) == (0.3, "v1 /dsc-lab")


def test_no_quota_is_none_and_not_unknown(tmp_path: Path) -> None:
    _lab_like_tree(tmp_path, "-1\n")
    host = describe_host(tmp_path)
    assert (host.cpu_quota_cores, host.cpu_cgroup) == (None, "v1 /dsc-lab/client1")
    assert "cpu_quota_cores" not in host.unknown


def test_a_hidden_cgroup_hierarchy_is_unknown_with_why(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/user.slice\n")
    write(tmp_path, "proc/self/mounts", "proc /proc proc rw 0 0\n")
    host = describe_host(tmp_path)
    assert host.cpu_quota_cores is None
    assert host.unknown["cpu_quota_cores"] == "the cgroup v2 cpu hierarchy is not mounted"


def test_v2_quota(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/bench/client\n")
    write(tmp_path, "proc/self/mounts", "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n")
    write(tmp_path, "sys/fs/cgroup/bench/client/cpu.max", "150000 100000\n")
    write(tmp_path, "sys/fs/cgroup/bench/cpu.max", "max 100000\n")
    host = describe_host(tmp_path)
    assert (host.cpu_quota_cores, host.cpu_cgroup) == (1.5, "v2 /bench/client")


def test_the_description_crosses_the_wire_as_its_message() -> None:
    described = describe(None)
    assert decode(PlatformDescription, encode(described)) == described
    assert described.server is None
    assert {tool.name for tool in described.host.tools} == {
        "redis-server", "redis-benchmark", "memtier_benchmark", "netperf"}


def test_an_unreachable_server_is_unknown_with_why() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = describe_server(ServerProbe("127.0.0.1", port))
    assert server.endpoint == f"127.0.0.1:{port}"
    assert (server.info, server.config) == ({}, {})
    assert "refused" in server.unknown["info"].lower()
