"""The platform parsers (agent/platform_parse.py) on outputs captured here
(tests/fixtures/platform/) and on the variants other machines print."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.platform_parse import (
    CgroupMembership,
    cgroup_ancestry,
    cgroup_mount,
    parse_cfs_quota,
    parse_cpu_max,
    parse_cpuinfo,
    parse_ethtool_driver,
    parse_ethtool_features,
    parse_info,
    parse_meminfo_total,
    parse_os_release,
    parse_proc_cgroup,
    version_line,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "platform"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_cpuinfo_of_this_machine() -> None:
    cpu = parse_cpuinfo(fixture("cpuinfo-xeon-kvm.txt"))
    assert cpu.model == "Intel(R) Xeon(R) Processor"
    assert (cpu.sockets, cpu.cores, cpu.threads) == (1, 2, 2)
    assert cpu.hypervisor


def _processor(n: int, socket: int, core: int, flags: str = "fpu sse2") -> str:
    return (f"processor\t: {n}\nmodel name\t: Test CPU\nphysical id\t: {socket}\n"
            f"core id\t\t: {core}\nflags\t\t: {flags}\n")


def test_cpuinfo_counts_sockets_cores_and_hyperthreads() -> None:
    blocks = [_processor(n, socket=n // 4, core=(n // 2) % 2) for n in range(8)]
    cpu = parse_cpuinfo("\n".join(blocks))
    assert (cpu.sockets, cpu.cores, cpu.threads, cpu.hypervisor) == (2, 4, 8, False)


def test_cpuinfo_without_topology_leaves_sockets_and_cores_unknown() -> None:
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\n\nprocessor\t: 1\nBogoMIPS\t: 50.00\n"
    cpu = parse_cpuinfo(arm)
    assert (cpu.model, cpu.sockets, cpu.cores, cpu.threads) == (None, None, None, 2)


def test_os_release_of_this_machine() -> None:
    assert parse_os_release(fixture("os-release-debian12.txt")) == \
        "Debian GNU/Linux 12 (bookworm)"


def test_os_release_without_pretty_name() -> None:
    assert parse_os_release("NAME='Alpine Linux'\nVERSION=3.19\n") == "Alpine Linux 3.19"
    assert parse_os_release("# nothing\n") is None


def test_meminfo_total_in_bytes() -> None:
    assert parse_meminfo_total(fixture("meminfo.txt")) == 24683656 * 1024
    assert parse_meminfo_total("MemFree: 1 kB\n") is None


def test_cgroup_membership_v1_cpu_line_of_this_machine() -> None:
    assert parse_proc_cgroup(fixture("proc-self-cgroup-v1.txt")) == CgroupMembership("v1", "/")


def test_cgroup_membership_v1_in_a_lab_client_and_v2() -> None:
    assert parse_proc_cgroup(fixture("proc-self-cgroup-lab-client.txt")) == \
        CgroupMembership("v1", "/dsc-lab/client1")
    assert parse_proc_cgroup("0::/user.slice/run.scope\n") == \
        CgroupMembership("v2", "/user.slice/run.scope")
    assert parse_proc_cgroup("garbage\n") is None


def test_cgroup_mount_points() -> None:
    mounts = fixture("proc-mounts-hybrid.txt")
    assert cgroup_mount(mounts, "v1") == "/sys/fs/cgroup/cpu"
    assert cgroup_mount(mounts, "v2") == "/sys/fs/cgroup/unified"
    assert cgroup_mount("proc /proc proc rw 0 0\n", "v1") is None


def test_cpu_quota_files() -> None:
    assert parse_cfs_quota(fixture("cpu.cfs_quota_us-lab-client.txt"),
                           fixture("cpu.cfs_period_us-lab-client.txt")) == 0.5
    assert parse_cfs_quota("-1\n", "100000\n") is None
    assert parse_cpu_max("30000 100000\n") == 0.3
    assert parse_cpu_max("max 100000\n") is None
    for junk in ("", "max", "1 0", "x 100000"):
        with pytest.raises(ValueError, match=r"not a cpu\.max"):
            parse_cpu_max(junk)
    with pytest.raises(ValueError):
        parse_cfs_quota("lots", "100000")


@given(st.lists(st.text(alphabet="abc-", min_size=1, max_size=4), max_size=5))
def test_cgroup_ancestry_ends_at_the_root(parts: list[str]) -> None:
    path = "/" + "/".join(parts)
    ancestry = cgroup_ancestry(path)
    assert ancestry[-1] == "/"
    assert ancestry[0] == ("/" + "/".join(parts)).rstrip("/") or ancestry[0] == "/"
    assert len(ancestry) == len(parts) + 1


def test_ethtool_driver_of_this_machine() -> None:
    assert parse_ethtool_driver(fixture("ethtool-i-virtio.txt")) == "virtio_net 1.0.0"
    assert parse_ethtool_driver(fixture("ethtool-i-lo.txt")) is None  # "Operation not supported"


def test_ethtool_offloads_of_this_machine() -> None:
    offloads = parse_ethtool_features(fixture("ethtool-k-virtio.txt"))
    assert offloads == {
        "rx-checksumming": True, "tx-checksumming": True, "scatter-gather": True,
        "tcp-segmentation-offload": True, "generic-segmentation-offload": True,
        "generic-receive-offload": True, "large-receive-offload": False,
    }  # fmt: skip


def test_version_lines() -> None:
    assert version_line("\n  Netperf version 2.7.0\n") == "Netperf version 2.7.0"
    assert version_line("   \n") is None


def test_info_server_less_what_changes_while_it_runs() -> None:
    info = parse_info(fixture("info-server.txt"))
    assert info["redis_version"] == "7.0.15"
    assert info["multiplexing_api"] == "epoll"
    assert not {"uptime_in_seconds", "process_id", "run_id", "lru_clock"} & set(info)
