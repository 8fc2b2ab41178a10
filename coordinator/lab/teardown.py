"""Tearing a lab down: every trace of it, from the state file and by naming convention.

Processes go first (SIGTERM, then SIGKILL after a deadline), so that namespaces, users and
cgroups can go after them; then links, namespaces, the bridge, users and homes, cgroups, the
inventories ``lab_up`` wrote and the state directory. Each step is attempted even when an
earlier one failed; what could not be removed is reported at the end as one LabError.
"""

from __future__ import annotations

import contextlib
import grp
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

from agent.runlock import LOCK_DIRECTORIES, lock_name
from coordinator.core.errors import LabError, last_line
from coordinator.lab import cgroups as lab_cgroups
from coordinator.lab import network as lab_network
from coordinator.lab import processes as lab_processes
from coordinator.lab import system as sysio
from coordinator.lab.config_files import is_lab_inventory
from coordinator.lab.plan import (
    LabPaths,
    Report,
    bridge_name,
    cgroup_group,
    home_dir,
    is_lab_veth,
    lab_host_of,
    user_comment,
)

PROCESS_ROUNDS = 5
"""Scans for processes to kill before giving up (a process may fork while we kill)."""


class Teardown:
    """Removes one lab's traces, step by step, noting what went and what would not go."""

    def __init__(self, name: str, state_root: Path, report: Report) -> None:
        self.name, self.report = name, report
        self.paths = LabPaths.of(name, state_root)
        self.removed: list[str] = []
        self.failed: list[str] = []
        try:
            self.state = sysio.read_state(self.paths)
        except LabError as exc:
            report(f"{exc}; cleaning up by naming convention")
            self.state = None

    def done(self, what: str) -> None:
        self.removed.append(what)
        self.report(f"removed {what}")

    def attempt(self, what: str, action: Callable[[], object]) -> bool:
        try:
            action()
        except (LabError, OSError) as exc:
            self.failed.append(f"{what}: {str(exc).strip()}")
            return False
        self.done(what)
        return True

    def namespaces(self) -> list[str]:
        found = {ns for ns in lab_network.namespaces() if lab_host_of(self.name, ns)}
        if self.state is not None:
            found |= {
                h.namespace for h in self.state.hosts if lab_network.namespace_id(h.namespace)
            }
        return sorted(found)

    def users(self) -> list[str]:
        return sorted(entry.pw_name for entry in sysio.users_with_comment(user_comment(self.name)))

    def processes(self) -> None:
        """Stop every process of the lab; scan again until none is left (forks race us)."""
        for _ in range(PROCESS_ROUNDS):
            victims = {p.pid: p.comm for p in self._victims()}
            if not victims:
                return
            try:
                lab_processes.terminate(victims)
            except LabError as exc:
                self.failed.append(str(exc))
                return
            for pid, comm in sorted(victims.items()):
                self.done(f"process {pid} ({comm})")
        self.failed.append(f"processes kept appearing after {PROCESS_ROUNDS} rounds of killing")

    def _victims(self) -> list[lab_processes.ProcessInfo]:
        """Processes in a lab namespace or cgroup, of a lab user, or a lab sshd/redis-server."""
        namespaces = {lab_network.namespace_id(ns) for ns in self.namespaces()} - {None}
        uids = {entry.pw_uid for entry in sysio.users_with_comment(user_comment(self.name))}
        cgroup_pids = {pid for cgroup in self.cgroups() for pid in lab_cgroups.cgroup_pids(cgroup)}
        root = str(self.paths.root)
        return [
            p
            for p in lab_processes.scan_processes()
            if p.netns in namespaces
            or p.uid in uids
            or p.pid in cgroup_pids
            or (
                p.comm in ("sshd", "redis-server")
                and (f"{root}/" in p.cmdline or p.cwd == root or p.cwd.startswith(f"{root}/"))
            )
        ]

    def cgroups(self) -> list[Path]:
        found = set(self.state.cgroups.values()) if self.state is not None else set()
        root = lab_cgroups.cpu_cgroup_root()
        if root is not None:
            group = root.path / cgroup_group(self.name)
            if group.is_dir():
                found |= {group, *(p for p in group.iterdir() if p.is_dir())}
        return sorted((p for p in found if p.is_dir()), key=lambda p: len(p.parts), reverse=True)

    def run(self, *, keep_root: bool) -> list[str]:
        """Remove everything; LabError naming what stayed, after trying every step."""
        self.processes()
        self._network()
        for user in self.users():
            self._user(user)
        if self.state is not None:  # homes of users that are already gone
            for host in self.state.hosts:
                home = home_dir(host.user)
                if sysio.user_entry(host.user) is None and home.is_dir():
                    self.attempt(f"home {home}", partial(shutil.rmtree, home))
        self._cgroups()
        self._inventories()
        if self.paths.root.exists():
            self.attempt(
                f"state directory {self.paths.root}", lambda: shutil.rmtree(self.paths.root)
            )
        if not keep_root:
            with contextlib.suppress(OSError):
                self.paths.root.parent.rmdir()  # the state root, when no other lab uses it
        if self.failed:
            raise LabError(f"lab down could not remove: {'; '.join(self.failed)}")
        return self.removed

    def _network(self) -> None:
        for link in lab_network.links():
            if is_lab_veth(self.name, link) and lab_network.link_kind(link) == "veth":
                self.attempt(f"veth {link}", partial(sysio.run, ["ip", "link", "del", link]))
        for ns in self.namespaces():
            self._run_locks(ns)
            self.attempt(f"namespace {ns}", partial(sysio.run, ["ip", "netns", "del", ns]))
        bridge = bridge_name(self.name)
        if lab_network.is_bridge(bridge):
            self.attempt(f"bridge {bridge}", lambda: sysio.run(["ip", "link", "del", bridge]))

    def _run_locks(self, ns: str) -> None:
        """The run lock files the namespace's agents left (agent.runlock: one per network
        namespace); its processes are gone, so nothing holds them."""
        ns_id = lab_network.namespace_id(ns)
        if ns_id is None:
            return
        for directory in LOCK_DIRECTORIES:
            path = directory / lock_name(ns_id[1])
            if path.is_file():
                self.attempt(f"run lock {path}", path.unlink)

    def _cgroups(self) -> None:
        for cgroup in self.cgroups():  # deepest first; remove_cgroup skips one already gone
            try:
                for path in lab_cgroups.remove_cgroup(cgroup):
                    self.done(f"cgroup {path}")
            except (LabError, OSError) as exc:
                self.failed.append(f"cgroup {cgroup}: {exc}")

    def _user(self, user: str) -> None:
        entry = sysio.user_entry(user)
        home = Path(entry.pw_dir) if entry is not None else home_dir(user)
        had_home = home.is_dir()
        result = sysio.run(["userdel", "--remove", user], check=False)
        if sysio.user_entry(user) is not None:
            self.failed.append(f"user {user}: {last_line(result.stderr)}")
            return
        self.done(f"user {user}")
        if home.is_dir() and home == home_dir(user):
            self.attempt(f"home {home}", lambda: shutil.rmtree(home))
        elif had_home and not home.exists():
            self.done(f"home {home}")
        with contextlib.suppress(KeyError):
            grp.getgrnam(user)
            self.attempt(f"group {user}", lambda: sysio.run(["groupdel", user]))

    def _inventories(self) -> None:
        if self.state is None:
            return
        for path in self.state.inventories:
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError):
                text = ""
            if is_lab_inventory(text, self.name):
                self.attempt(f"inventory {path}", path.unlink)
            else:
                self.report(f"kept {path}: it was not written by `coord lab up` for {self.name}")
