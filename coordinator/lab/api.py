"""A throw-away multi-host lab on one Linux machine: ``coord lab up``, ``down`` and ``status``.

One bridge in the root namespace, one network namespace per host joined to it by a veth pair,
in each namespace an sshd of its own with its own Unix user and key, and redis-server on the
server host. ``lab_up`` writes a ready inventory; ``lab_down`` removes every trace, even of a
lab whose state file is gone. Documented for users in docs/lab.md.

    api.py           the API: lab_up, lab_down, lab_status, LabStatus; checks; the lock
    plan.py          pure: LabSpec, LabHost, names, addresses, paths
    config_files.py  pure: redis.conf, sshd_config and inventory texts
    state.py         pure: the state file's model and (de)serialization
    build.py         the build steps, in order
    teardown.py      removal of every trace, from the state file or by naming convention
    system.py        thin system calls: commands, daemons, tools, files, users
    processes.py     /proc: live processes, their namespaces, SIGTERM then SIGKILL
    network.py       namespaces, links, addresses, listening sockets, a Redis ping
    cgroups.py       the CPU cgroups of client hosts and of the server host
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from coordinator.core.errors import LabError
from coordinator.lab import cgroups as lab_cgroups
from coordinator.lab import network as lab_network
from coordinator.lab import processes as lab_processes
from coordinator.lab import system as sysio
from coordinator.lab.build import Builder
from coordinator.lab.config_files import (
    is_lab_inventory,
    lab_inventories,
    model_inventory_path,
    render_inventory,
    render_model_inventory,
)
from coordinator.lab.model_server import model_server_answers, require_extra
from coordinator.lab.plan import (
    DEFAULT_STATE_ROOT,
    NAME_RE,
    REDIS_PORT,
    SSH_PORT,
    LabHost,
    LabPaths,
    LabSpec,
    Report,
    bridge_address,
    bridge_name,
    cluster_ports,
    home_dir,
    is_lab_veth,
    lab_host_of,
    plan_hosts,
    redis_user,
    user_comment,
)
from coordinator.lab.state import LabState, LabStatus
from coordinator.lab.teardown import Teardown

__all__ = [
    "DEFAULT_STATE_ROOT",
    "LabBusy",
    "LabHost",
    "LabSpec",
    "LabStatus",
    "lab_down",
    "lab_status",
    "lab_up",
    "render_inventory",
]

LOCK_TIMEOUT = 120.0
"""Seconds a lab command waits for another one working in the same state root."""


class LabBusy(LabError):
    """Another lab command held the state root's lock for all of :data:`LOCK_TIMEOUT`."""


def _ignore(_: str) -> None:
    """The default ``report``: say nothing."""


# --- public API ----------------------------------------------------------------------------


def lab_up(spec: LabSpec, inventory_path: Path, report: Report = _ignore) -> LabStatus:
    """Build the lab ``spec`` describes and write its inventory at ``inventory_path``.

    Idempotent: when the same lab is already up and healthy nothing is touched (the inventory
    is written only when missing or different). A lab of the same name with another spec is
    refused; remains of a crashed build, or an unhealthy lab, are removed and rebuilt. On any
    failure whatever was built is removed and a one-line LabError says what failed.
    """
    sysio.check_host()
    if spec.model_server:
        require_extra()
    tools = sysio.require_tools(sysio.CLUSTER_TOOLS if spec.cluster else None)
    inventory_path = Path(inventory_path).absolute()
    paths = LabPaths.of(spec.name, spec.state_root)
    _check_state_root(spec.state_root)
    made_root = not spec.state_root.is_dir()
    with _locked(spec.state_root, create=True):
        try:
            return _up(spec, paths, tools, inventory_path, report)
        except BaseException:
            if made_root:  # refused or failed: no empty state root left behind
                with contextlib.suppress(OSError):
                    spec.state_root.rmdir()
            raise


def _up(spec: LabSpec, paths: LabPaths, tools: dict[str, str], inventory_path: Path,
        report: Report) -> LabStatus:
    """``lab_up``'s work, under the state root's lock."""
    _check_inventory_path(inventory_path)
    state = sysio.read_state(paths)
    if state is not None and state.complete:
        if state.spec != spec:
            raise LabError(
                f"a lab named {spec.name} is already up with "
                f"{state.spec.describe_difference(spec)}; run `coord lab down` first"
            )
        status = _status_of(state, paths)
        if status.healthy:
            report(f"lab {spec.name} is already up")
            return _reuse(state, paths, inventory_path, report)
        report(f"lab {spec.name} is unhealthy ({status.problems[0]}); rebuilding it")
    _check_clashes(spec)
    _check_users(spec)
    if state is not None or _remains(spec.name):
        report(f"removing the remains of a previous lab {spec.name}")
        _down(spec.name, spec.state_root, report, keep_root=True)
    builder = Builder(spec, paths, tools, inventory_path, report)
    try:
        builder.build()
    except (LabError, OSError, ValueError) as exc:
        report(f"lab up failed while {builder.step}; removing what was built")
        detail = str(exc).replace("\n", " ")
        try:
            _down(spec.name, spec.state_root, _ignore, keep_root=True)
        except LabError:
            detail += "; some of it could not be removed: run `coord lab down`"
        raise LabError(f"lab up failed while {builder.step}: {detail}") from exc
    except BaseException:  # interrupted: leave nothing half-built, then let it through
        with contextlib.suppress(LabError, OSError):
            _down(spec.name, spec.state_root, _ignore, keep_root=True)
        raise
    return _status_of(builder.state, paths)


def lab_down(
    name: str = "coord", state_root: Path = DEFAULT_STATE_ROOT, report: Report = _ignore
) -> list[str]:
    """Remove every trace of the lab ``name``; return what was removed (empty: nothing was).

    Works from the state file when there is one and falls back to the naming convention, so
    the remains of a crashed build or a damaged state file are found too.
    """
    sysio.check_host()
    if not NAME_RE.fullmatch(name):
        raise LabError(f"lab name {name!r} is invalid")
    state_root = Path(state_root)
    with _locked(state_root, create=False):
        return _down(name, state_root, report)


def lab_status(name: str = "coord", state_root: Path = DEFAULT_STATE_ROOT) -> LabStatus | None:
    """The lab ``name`` as it is now, or None when no lab of that name has a state file."""
    sysio.check_host()
    paths = LabPaths.of(name, Path(state_root))
    state = sysio.read_state(paths)
    return None if state is None else _status_of(state, paths)


# --- checks --------------------------------------------------------------------------------


def _check_state_root(state_root: Path) -> None:
    """sshd reads the authorized keys below the state root as the lab user (StrictModes)."""
    for directory in [state_root, *state_root.parents]:
        if not directory.exists():
            continue
        stat = directory.stat()
        mode = stat.st_mode
        if stat.st_uid != 0:
            raise LabError(
                f"state root {state_root} is unusable: {directory} is not owned by root, so "
                "sshd would refuse the lab's keys; choose another state root"
            )
        if mode & 0o022:
            raise LabError(
                f"state root {state_root} is unusable: {directory} is writable by group or "
                "others, so sshd would refuse the lab's keys; choose another state root"
            )
        if not mode & 0o001:
            raise LabError(
                f"state root {state_root} is unusable: {directory} (mode {mode & 0o777:o}) is "
                "not searchable by the lab users; choose another state root"
            )


def _check_inventory_path(path: Path) -> None:
    if not path.parent.is_dir():
        raise LabError(f"cannot write the inventory {path}: {path.parent} is not a directory")
    if path.exists():
        try:
            ours = is_lab_inventory(path.read_text())
        except (OSError, UnicodeDecodeError):
            ours = False
        if not ours:
            raise LabError(
                f"{path} exists and was not written by `coord lab up`; "
                "choose another inventory path or remove it"
            )


def _check_clashes(spec: LabSpec) -> None:
    own_bridge = bridge_name(spec.name)
    for interface, address in lab_network.ipv4_addresses():
        if interface == own_bridge:
            continue
        if ipaddress.IPv4Interface(address).network.overlaps(spec.network):
            raise LabError(
                f"subnet {spec.subnet} clashes with {address} on interface {interface}; "
                "choose another subnet inside 198.18.0.0/15"
            )


def _check_users(spec: LabSpec) -> None:
    comment = user_comment(spec.name)
    redis = sysio.user_entry(redis_user(spec.name))
    if redis is not None and redis.pw_gecos != comment:
        raise LabError(
            f"user {redis.pw_name} exists and is not a lab user; remove it or rename the lab"
        )
    for host in plan_hosts(spec):
        entry = sysio.user_entry(host.user)
        if entry is not None and entry.pw_gecos != comment:
            raise LabError(
                f"user {host.user} exists and is not a lab user; remove it or rename the lab"
            )
        home = home_dir(host.user)
        if entry is None and home.exists():
            raise LabError(
                f"{home} exists but user {host.user} does not; remove it or rename the lab"
            )


def _remains(name: str) -> bool:
    return bool(
        any(lab_host_of(name, ns) for ns in lab_network.namespaces())
        or any(is_lab_veth(name, link) for link in lab_network.links())
        or lab_network.link_exists(bridge_name(name))
        or sysio.users_with_comment(user_comment(name))
    )


@contextlib.contextmanager
def _locked(state_root: Path, *, create: bool) -> Iterator[None]:
    """One lab command at a time per state root: an flock on the directory, waited for.

    ``lab_down`` removes the state root when it is empty; a command that was waiting on the
    removed directory notices (another inode, or none, at that path) and locks it afresh.
    """
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        if create and not state_root.is_dir():
            state_root.mkdir(mode=0o755, parents=True, exist_ok=True)
            state_root.chmod(0o755)
        elif not state_root.is_dir():
            yield
            return
        try:
            descriptor = os.open(state_root, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue  # removed under us: create it again, or find there is nothing to lock
        try:
            _flock(descriptor, deadline, state_root)
            if _same_inode(descriptor, state_root):
                yield
                return
        finally:
            os.close(descriptor)


def _flock(descriptor: int, deadline: float, state_root: Path) -> None:
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LabBusy(
                    f"another `coord lab` command has been working in {state_root} for "
                    f"{LOCK_TIMEOUT:g}s; wait for it to end"
                ) from None
            time.sleep(sysio.POLL_INTERVAL)
        else:
            return


def _same_inode(descriptor: int, path: Path) -> bool:
    try:
        here, locked = path.stat(), os.fstat(descriptor)
        return (here.st_dev, here.st_ino) == (locked.st_dev, locked.st_ino)
    except FileNotFoundError:
        return False


# --- state ---------------------------------------------------------------------------------


def _reuse(state: LabState, paths: LabPaths, inventory: Path, report: Report) -> LabStatus:
    """The lab is up and healthy: only (re)write the inventory when it is missing or stale."""
    texts = {inventory: render_inventory(state.spec, state.hosts)}
    if state.spec.model_server:
        texts[model_inventory_path(inventory)] = render_model_inventory(state.spec, state.hosts)
    for path, text in texts.items():
        try:
            current = path.read_text()
        except OSError:
            current = None
        if current != text:
            sysio.write_file(path, text)
            report(f"inventory {path}")
    wanted = lab_inventories(state.spec, inventory)
    if any(path not in state.inventories for path in wanted):
        kept = [path for path in state.inventories if path not in wanted]
        state = replace(state, inventories=[*kept, *wanted])
        sysio.write_state(paths, state)
    return replace(_status_of(state, paths), inventory_path=inventory)


def _status_of(state: LabState, paths: LabPaths) -> LabStatus:
    spec, problems = state.spec, []
    if not state.complete:
        problems.append("its build did not finish")
    processes_found = lab_processes.scan_processes()
    processes: dict[str, int] = {}
    sshd: dict[str, bool] = {}
    for host in state.hosts:
        ns = lab_network.namespace_id(host.namespace)
        processes[host.name] = sum(1 for p in processes_found if ns and p.netns == ns)
        if ns is None:
            problems.append(f"namespace {host.namespace} is missing")
        pid = sysio.read_pidfile(paths.sshd_pidfile(host.name))
        sshd[host.name] = bool(
            pid
            and ns
            and lab_processes.is_alive(pid)
            and any(p.pid == pid and p.netns == ns for p in processes_found)
            and lab_network.tcp_listening(pid, host.address, SSH_PORT)
        )
        if not sshd[host.name]:
            problems.append(f"sshd of {host.name} is not listening on {host.address}:{SSH_PORT}")
        if sysio.user_entry(host.user) is None:
            problems.append(f"user {host.user} is missing")
        if not host.key_file.exists():
            problems.append(f"key {host.key_file} is missing")
        cgroup = state.cgroups.get(host.name)
        if cgroup is not None and (pid is None or pid not in lab_cgroups.cgroup_pids(cgroup)):
            problems.append(f"sshd of {host.name} is not in cgroup {cgroup}")
    bridge = bridge_name(spec.name)
    bridge_cidr = f"{bridge_address(spec)}/{spec.network.prefixlen}"
    addresses = lab_network.ipv4_addresses()
    if (bridge, bridge_cidr) not in addresses or not lab_network.is_bridge(bridge):
        problems.append(f"bridge {bridge} with {bridge_cidr} is missing")
    server = next((host for host in state.hosts if host.role == "server"), None)
    password = sysio.read_secret(paths.redis_password)
    if password is None:
        problems.append(f"{paths.redis_password} is missing")
    redis = server is not None and lab_network.redis_ping(
        server.address, REDIS_PORT, device=bridge, password=password
    )
    if not redis:
        problems.append("redis-server does not answer PING")
    problems += _cluster_problems(spec, server, bridge, password)
    model_server = bool(spec.model_server and server is not None
                        and model_server_answers(server, bridge))
    problems += ([] if model_server or not spec.model_server
                 else ["the model server does not answer GET /health"])
    server_cgroup = state.cgroups.get(server.name) if server is not None else None
    redis_pid = sysio.read_pidfile(paths.redis_pidfile)
    if server_cgroup is not None and redis_pid not in lab_cgroups.cgroup_pids(server_cgroup):
        problems.append(f"redis-server is not in cgroup {server_cgroup}")
    if not paths.known_hosts.exists():
        problems.append(f"{paths.known_hosts} is missing")
    return LabStatus(
        spec=spec,
        hosts=list(state.hosts),
        inventory_path=state.inventories[-1] if state.inventories else Path(),
        known_hosts=paths.known_hosts,
        processes=processes,
        sshd=sshd,
        redis=redis,
        model_server=model_server,
        cgroups=dict(state.cgroups),
        inventories=list(state.inventories),
        complete=state.complete,
        problems=problems,
    )


def _cluster_problems(spec: LabSpec, server: LabHost | None, bridge: str,
                      password: str | None) -> list[str]:
    """The cluster nodes (``--cluster``) that do not answer PING."""
    return [
        f"cluster node {port} does not answer PING"
        for port in cluster_ports(spec)
        if server is None or not lab_network.redis_ping(server.address, port, device=bridge,
                                                        password=password)
    ]


def _down(name: str, state_root: Path, report: Report, *, keep_root: bool = False) -> list[str]:
    return Teardown(name, state_root, report).run(keep_root=keep_root)
