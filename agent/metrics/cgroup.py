"""The CPU quota of the cgroup this process runs in, and its throttling counters (v1 and v2).

A quota may be set on the process's own cgroup or on any ancestor; the closest one with a quota
is the one that throttles. On a host without a quota (no cpu controller, ``max`` everywhere,
``-1``), :func:`find_quota_cgroup` answers None: there is nothing to throttle, which is not a
missing metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

CGROUP_MOUNT: Final = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP: Final = Path("/proc/self/cgroup")
PROC_MOUNTS: Final = Path("/proc/self/mounts")


@dataclass(frozen=True)
class QuotaCgroup:
    """A cgroup with a CPU quota: its directory, version and quota in cores."""

    path: Path
    version: str
    quota_cores: float


@dataclass(frozen=True)
class ThrottleCounters:
    """Cumulative cpu.stat counters; ``throttled_usec`` converted from v1's nanoseconds."""

    periods: int
    throttled_periods: int
    throttled_usec: int


def parse_own_cgroups(text: str) -> dict[str, str]:
    """/proc/self/cgroup: controller list ("" for v2's unified line) -> path."""
    paths = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2]
    return paths


def v1_cpu_mount(mounts_text: str) -> tuple[Path, str] | None:
    """The v1 mount holding the cpu controller, and its controller list as /proc/self/cgroup
    names it (``cpu,cpuacct``)."""
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] == "cgroup":
            options = fields[3].split(",")
            if "cpu" in options:
                controllers = ",".join(o for o in options if o in ("cpu", "cpuacct"))
                return Path(fields[1]), controllers
    return None


def parse_quota_v2(text: str) -> float | None:
    """cpu.max: ``QUOTA PERIOD`` or ``max PERIOD``."""
    quota, _, period = text.strip().partition(" ")
    if quota == "max":
        return None
    return int(quota) / int(period or "100000")


def parse_quota_v1(quota_text: str, period_text: str) -> float | None:
    quota = int(quota_text.strip())
    return None if quota < 0 else quota / int(period_text.strip())


def parse_cpu_stat(text: str, version: str) -> ThrottleCounters:
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[name] = int(value)
    throttled = (values["throttled_usec"] if version == "v2"
                 else values["throttled_time"] // 1000)
    return ThrottleCounters(values["nr_periods"], values["nr_throttled"], throttled)


def _closest_with_quota(leaf: Path, top: Path, version: str) -> QuotaCgroup | None:
    directory = leaf
    while True:
        quota = _quota(directory, version)
        if quota is not None:
            return QuotaCgroup(directory, version, quota)
        if directory == top or top not in directory.parents:
            return None
        directory = directory.parent


def _quota(directory: Path, version: str) -> float | None:
    try:
        if version == "v2":
            return parse_quota_v2((directory / "cpu.max").read_text())
        return parse_quota_v1((directory / "cpu.cfs_quota_us").read_text(),
                              (directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None  # no cpu controller here (the root has no cpu.max)


def find_quota_cgroup(
    own: Path = PROC_SELF_CGROUP, mounts: Path = PROC_MOUNTS, mount: Path = CGROUP_MOUNT
) -> QuotaCgroup | None:
    """The closest cgroup of this process with a CPU quota, or None (no quota anywhere)."""
    try:
        paths = parse_own_cgroups(own.read_text())
        if (mount / "cgroup.controllers").exists() and "" in paths:
            leaf = mount / paths[""].lstrip("/")
            return _closest_with_quota(leaf, mount, "v2")
        found = v1_cpu_mount(mounts.read_text())
    except OSError:
        return None
    if found is None:
        return None
    root, controllers = found
    relative = next((path for names, path in paths.items()
                     if set(names.split(",")) >= set(controllers.split(","))), None)
    if relative is None:
        return None
    return _closest_with_quota(root / relative.lstrip("/"), root, "v1")


def unseen_cgroup(
    own: Path = PROC_SELF_CGROUP, mounts: Path = PROC_MOUNTS, mount: Path = CGROUP_MOUNT
) -> str | None:
    """Why this process's cgroup cannot be read, when it is not the root cgroup but no cgroup
    filesystem is mounted where this process looks (``ip netns exec`` mounts a fresh /sys
    without them): a quota may throttle it unseen. None when there is nothing to say."""
    try:
        paths = parse_own_cgroups(own.read_text())
        mounted = (mount / "cgroup.controllers").exists() or v1_cpu_mount(mounts.read_text())
    except OSError:
        return None
    placed = {names: path for names, path in paths.items()
              if path not in ("", "/") and ("cpu" in names.split(",") or names == "")}
    if not placed or mounted:
        return None
    names, path = next(iter(placed.items()))
    return (f"this process is in cgroup {names or 'unified'}:{path} but no cgroup filesystem "
            f"is mounted under {mount} here: a CPU quota cannot be read")


def read_throttling(cgroup: QuotaCgroup) -> ThrottleCounters:
    return parse_cpu_stat((cgroup.path / "cpu.stat").read_text(), cgroup.version)
