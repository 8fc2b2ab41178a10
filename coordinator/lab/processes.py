"""The lab's view of processes: which are alive, every process with its namespace, and ending them.

Reads ``/proc`` directly (no ``ps``); :func:`terminate` escalates from SIGTERM to SIGKILL,
polling with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass

from coordinator.core.errors import LabError
from coordinator.lab.network import ns_id
from coordinator.lab.system import KILL_TIMEOUT, PROC, TERM_TIMEOUT, wait_until


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    uid: int
    comm: str
    cmdline: str
    cwd: str
    netns: tuple[int, int] | None


def _proc_state(pid: int) -> str | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split(" ", 1)[0]


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an exited process nobody reaped)."""
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def scan_processes() -> list[ProcessInfo]:
    """Every live user-space process but this one (kernel threads and zombies skipped)."""
    found: list[ProcessInfo] = []
    me = os.getpid()
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if not cmdline or not is_alive(pid):
                continue  # kernel thread or zombie
            comm = (entry / "comm").read_text().strip()
            uid = entry.stat().st_uid
            netns = ns_id(entry / "ns" / "net")
            try:
                cwd = str((entry / "cwd").readlink())
            except OSError:
                cwd = ""
        except OSError:
            continue  # it exited while we looked
        text = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        found.append(ProcessInfo(pid, uid, comm, text, cwd, netns))
    return found


def terminate(pids: Iterable[int]) -> None:
    """SIGTERM ``pids``, then SIGKILL whatever is left after TERM_TIMEOUT.

    Raises LabError when a process survives SIGKILL for KILL_TIMEOUT.
    """
    targets = sorted({pid for pid in pids if is_alive(pid)})
    for sig, timeout in ((signal.SIGTERM, TERM_TIMEOUT), (signal.SIGKILL, KILL_TIMEOUT)):
        left = [pid for pid in targets if is_alive(pid)]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        try:
            wait_until(
                lambda: not any(is_alive(pid) for pid in targets),
                timeout=timeout,
                what=f"processes {left} to exit",
            )
            break
        except LabError:
            if sig == signal.SIGKILL:
                raise
