"""The lab's CPU cgroups: find the hierarchy with the cpu controller, make, fill and remove groups.

Works on cgroup v2 (unified) and v1 (the ``cpu`` mount); each limited host's processes (client
hosts with ``--client-cpu``, the server host's sshd and redis-server with ``--server-cpu``) go
into ``<root>/<group>/<host>``, limited to a quota of CPU time.
"""

from __future__ import annotations

import errno
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from coordinator.lab.system import KILL_TIMEOUT, wait_until

CGROUP_MOUNT = Path("/sys/fs/cgroup")


CgroupVersion = Literal["v1", "v2"]


@dataclass(frozen=True)
class CpuCgroupRoot:
    version: CgroupVersion
    path: Path
    options: str = ""
    """The v1 mount's options (``rw,relatime,cpu``): a host's namespace mounts it alike."""


def cpu_cgroup_root() -> CpuCgroupRoot | None:
    """The cgroup hierarchy that holds the cpu controller: v2 unified, else v1's cpu mount."""
    controllers = CGROUP_MOUNT / "cgroup.controllers"
    if controllers.exists():
        if "cpu" in controllers.read_text().split():
            return CpuCgroupRoot("v2", CGROUP_MOUNT)
        return None
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        if len(fields) > 3 and fields[2] == "cgroup" and "cpu" in fields[3].split(","):
            return CpuCgroupRoot("v1", Path(fields[1]), fields[3])
    return None


def visible_cgroups_argv(root: CpuCgroupRoot | None, argv: list[str]) -> list[str]:
    """``argv`` run after mounting the cpu hierarchy where a real host has it.

    ``ip netns exec`` mounts a fresh sysfs on ``/sys`` (in a mount namespace of its own), which
    hides ``/sys/fs/cgroup``: a lab host's agent could not read its CPU quota, as a real
    host's can. The mount is the namespace's own; if it fails, ``argv`` runs all the same.
    """
    if root is None:
        return argv
    if root.version == "v2":
        mount = f"mount -t cgroup2 cgroup2 {shlex.quote(str(root.path))}"
    else:
        parent = root.path.parent
        mount = (f"mount -t tmpfs -o mode=755 cgroup_root {shlex.quote(str(parent))} && "
                 f"mkdir -p {shlex.quote(str(root.path))} && "
                 f"mount -t cgroup -o {shlex.quote(root.options)} cgroup "
                 f"{shlex.quote(str(root.path))}")
    return ["/bin/sh", "-c", f'{{ {mount}; }} 2>/dev/null; exec "$0" "$@"', *argv]


def _enable_cpu_controller(group: Path) -> None:
    control = group / "cgroup.subtree_control"
    if "cpu" not in control.read_text().split():
        control.write_text("+cpu")


def make_cpu_cgroup(
    root: CpuCgroupRoot, group: str, host: str, quota_us: int, period_us: int
) -> Path:
    """Create ``<root>/<group>/<host>`` limited to quota/period of CPU time; return its path."""
    parent = root.path / group
    if root.version == "v2":
        _enable_cpu_controller(root.path)
    parent.mkdir(exist_ok=True)
    if root.version == "v2":
        _enable_cpu_controller(parent)
    cgroup = parent / host
    cgroup.mkdir(exist_ok=True)
    if root.version == "v2":
        (cgroup / "cpu.max").write_text(f"{quota_us} {period_us}")
    else:
        (cgroup / "cpu.cfs_period_us").write_text(str(period_us))
        (cgroup / "cpu.cfs_quota_us").write_text(str(quota_us))
    return cgroup


def add_to_cgroup(cgroup: Path, pid: int) -> None:
    (cgroup / "cgroup.procs").write_text(str(pid))


def cgroup_pids(cgroup: Path) -> list[int]:
    try:
        return [int(line) for line in (cgroup / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def remove_cgroup(cgroup: Path) -> list[Path]:
    """Remove a cgroup and its child cgroups (deepest first); return what was removed.

    A cgroup whose last process just died can stay busy for a moment: retry until a deadline.
    """
    if not cgroup.is_dir():
        return []
    removed: list[Path] = []
    for child in sorted((p for p in cgroup.iterdir() if p.is_dir()), reverse=True):
        removed += remove_cgroup(child)

    def gone() -> bool:
        try:
            cgroup.rmdir()
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                return False
            raise
        return True

    wait_until(gone, timeout=KILL_TIMEOUT, what=f"cgroup {cgroup} to empty")
    return [*removed, cgroup]
