"""The agent's process group: it leads one, and takes every member with it when it stops.

The agent calls :func:`lead_own_group` before anything else, so every load process it starts
later (and their children, unless they move away on purpose) share its process group. At
shutdown, :func:`stop_group` finds them two ways — the agent's descendants, and any process in
its group (a double-forked child reparented to init keeps the group) — sends SIGTERM, waits up to
a grace period, then sends SIGKILL to what is left.

What this cannot cover: a ``kill -9`` of the agent itself. Drivers that must not survive that
should ask the kernel for a parent-death signal when they start (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import psutil

#: Rounds of TERM/KILL: a dying process may fork once more; the next round catches that.
_ROUNDS = 3
_WAIT_TICK = 0.05


def lead_own_group() -> str:
    """Start a new session (hence a new process group led by this process); say what happened.

    When sshd starts a command it already makes it a session leader, and ``setsid`` then fails
    with EPERM: the agent already leads its group, which is all it needs.
    """
    try:
        os.setsid()
    except PermissionError:
        if os.getpgid(0) != os.getpid():
            raise
        return f"already leads process group {os.getpid()}"
    return f"started session and process group {os.getpid()}"


def group_members() -> list[psutil.Process]:
    """Every live process to stop with the agent: its descendants and its group, minus itself."""
    me = os.getpid()
    group = os.getpgid(0)
    members: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(me).children(recursive=True):
            members[child.pid] = child
    for proc in psutil.process_iter():
        if proc.pid == me or proc.pid in members:
            continue
        try:
            if os.getpgid(proc.pid) == group:
                members[proc.pid] = proc
        except OSError:
            continue
    return [proc for proc in members.values() if _alive(proc)]


@dataclass(frozen=True)
class StopReport:
    terminated: int
    killed: int


def stop_group(grace: float) -> StopReport:
    """SIGTERM every member, wait up to ``grace`` seconds, SIGKILL the rest; reap children."""
    terminated = killed = 0
    for _ in range(_ROUNDS):
        members = group_members()
        if not members:
            break
        for proc in members:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        terminated += len(members)
        alive = wait_gone(members, grace)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        killed += len(alive)
        wait_gone(alive, grace)
    _reap_children()
    return StopReport(terminated=terminated, killed=killed)


def count_descendants() -> int:
    with contextlib.suppress(psutil.Error):
        return sum(1 for proc in psutil.Process().children(recursive=True) if _alive(proc))
    return 0


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` seconds for ``procs`` to end; those still alive.

    psutil's own wait on a process that is not our child ends only when its pid disappears,
    which never happens to a zombie nobody reaps; here a zombie counts as gone.
    """
    deadline = time.monotonic() + timeout
    alive = [proc for proc in procs if _alive(proc)]
    while alive and time.monotonic() < deadline:
        _gone, alive = psutil.wait_procs(alive, timeout=_WAIT_TICK)  # reaps our own children
        alive = [proc for proc in alive if _alive(proc)]
    return alive


def _alive(proc: psutil.Process) -> bool:
    """Running, and not a zombie (a zombie holds no resources; its parent reaps it)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap_children() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
