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


def _idle_tree(root: Path, driver: str, states: dict[int, tuple[str, str]],
               halt_poll: str | None = None) -> None:
    write(root, "sys/devices/system/cpu/cpuidle/current_driver", f"{driver}\n")
    write(root, "sys/devices/system/cpu/cpuidle/current_governor_ro", "menu\n")
    for number, (name, disabled) in states.items():
        state = f"sys/devices/system/cpu/cpu0/cpuidle/state{number}"
        write(root, f"{state}/name", f"{name}\n")
        write(root, f"{state}/disable", f"{disabled}\n")
    if halt_poll is not None:
        write(root, "sys/module/haltpoll/parameters/guest_halt_poll_ns", f"{halt_poll}\n")


def test_how_idle_cpus_sleep_is_described(tmp_path: Path) -> None:
    """A KVM guest that halts at once (this development VM: haltpoll, no polling), and bare
    metal with a deep state disabled (the states in order, 10 after 2)."""
    guest = tmp_path / "guest"
    _idle_tree(guest, "haltpoll", {0: ("POLL", "0"), 1: ("haltpoll idle", "0")}, "0")
    host = describe_host(guest)
    assert (host.cpu_idle, host.halt_poll_ns) == (
        "haltpoll, governor menu: POLL, haltpoll idle", 0)
    metal = tmp_path / "metal"
    _idle_tree(metal, "intel_idle", {0: ("POLL", "0"), 1: ("C1", "0"), 2: ("C1E", "0"),
                                     10: ("C6", "1")}, "200000")
    host = describe_host(metal)
    assert host.cpu_idle == "intel_idle, governor menu: POLL, C1, C1E"
    assert host.halt_poll_ns is None  # not a haltpoll guest: its parameter means nothing
    assert "not haltpoll" in host.unknown["halt_poll_ns"]


def test_a_host_without_cpuidle_has_its_idle_states_unknown(tmp_path: Path) -> None:
    host = describe_host(tmp_path)
    assert host.cpu_idle is None and "No such file or directory" in host.unknown["cpu_idle"]
    assert host.halt_poll_ns is None
