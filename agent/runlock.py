"""The host's run lock: one ``coord run`` at a time loads a host.

Two runs on the same hosts would each measure the other's load, and neither would know. So every
agent of a run takes the host's run lock before any load (:meth:`RunLock.take`) and keeps it
until it exits: an exclusive ``flock`` on a well-known file, which the kernel releases when the
agent dies, however it dies (its load processes never inherit the descriptor).

Where: ``/run/lock/coord-run-<netns>.lock`` (``/tmp`` when there is no ``/run/lock``). The same
file for every user, SSH login and agent cache directory of the host: the directory is the
system's, and the name depends only on the network namespace, which is what a host is to coord
(a lab's hosts are network namespaces of one machine; a real host has one namespace).

Who: the holder writes one JSON line into the file (:class:`Holder`: the operator's
``user@machine``, the coordinator's pid, the run's start, the agent's pid). The file is
writable by everyone, so a description is believed only when its ``agent_pid`` is the process
the kernel says holds the lock (``/proc/locks``); anyone else holding it, or a file nobody can
open, is named from what the kernel says (pid, user, command, start) — a local user cannot
block runs without being named, and ``--force`` runs anyway.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pwd
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

import psutil

from agent.drivers.errors import DriverError

#: ``DriverError`` kind of a refusal: another run holds the host.
KIND_BUSY: Final = "busy"
LOCK_DIRECTORIES: Final = (Path("/run/lock"), Path("/tmp"))  # noqa: S108 (a lock, not a temp file)
#: Longest holder description read from the file.
MAX_DESCRIPTION = 4096


# --- pure -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """Who holds (or asks for) a host: the run's operator and coordinator, and its agent."""

    operator: str  # user@machine of the coordinator
    coordinator_pid: int
    since: str  # the run's start, UTC, ISO 8601
    agent_pid: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "operator": self.operator,
            "coordinator_pid": self.coordinator_pid,
            "since": self.since,
            "agent_pid": self.agent_pid,
        }

    @classmethod
    def from_json(cls, data: object) -> Holder | None:
        """The holder a JSON object describes; None for anything else (a file is not trusted)."""
        if not isinstance(data, dict):
            return None
        operator, pid, since = data.get("operator"), data.get("coordinator_pid"), data.get("since")
        agent_pid = data.get("agent_pid", 0)
        if not (
            isinstance(operator, str)
            and isinstance(since, str)
            and type(pid) is int
            and type(agent_pid) is int
        ):
            return None
        return cls(operator=" ".join(operator.split())[:200], coordinator_pid=pid,
                   since=" ".join(since.split())[:64], agent_pid=agent_pid)  # fmt: skip

    def describe(self) -> str:
        return f"the coord run of {self.operator} (pid {self.coordinator_pid}) since {self.since}"


def parse_holder(text: str) -> Holder | None:
    try:
        return Holder.from_json(json.loads(text))
    except ValueError:
        return None


def lock_name(netns: int | None) -> str:
    """The lock file's name for a network namespace (its inode), or for the whole host."""
    return "coord-run.lock" if netns is None else f"coord-run-{netns}.lock"


def lock_pids(proc_locks: str, major: int, minor: int, inode: int) -> list[int]:
    """Processes ``/proc/locks`` shows holding a lock on the file ``major:minor:inode``
    (``1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF``; waiters, marked ``->``, left out)."""
    wanted = (major, minor, inode)
    pids = []
    for line in proc_locks.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->":
            continue
        try:
            pid = int(fields[4])
            dev_major, dev_minor, ino = fields[5].split(":")
            found = (int(dev_major, 16), int(dev_minor, 16), int(ino))
        except ValueError:
            continue
        if found == wanted and pid not in pids:
            pids.append(pid)
    return pids


@dataclass(frozen=True)
class ProcessFacts:
    """What the kernel says about a process (``psutil``), for naming a holder."""

    pid: int
    user: str | None = None
    command: str | None = None
    started: str | None = None

    def describe(self) -> str:
        parts = [f"process {self.pid}"]
        if self.command:
            parts.append(f"({self.command})")
        if self.user:
            parts.append(f"of user {self.user}")
        if self.started:
            parts.append(f"since {self.started}")
        return " ".join(parts)


def who_holds(holder: Holder | None, holders: list[ProcessFacts]) -> str:
    """Who holds the lock, in one line: the described run when the kernel agrees that its agent
    holds it, else the processes the kernel names."""
    if holder is not None and [facts.pid for facts in holders] == [holder.agent_pid]:
        return f"held by {holder.describe()}"
    if holders:
        return "held by " + ", ".join(facts.describe() for facts in holders) + ", not a coord agent"
    return "held by a process this agent cannot see"


def refusal(held_by: str) -> str:
    """The one line a refused run shows for a host."""
    return f"this host is {held_by}; pass --force to run anyway"


def utc_text(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- I/O --------------------------------------------------------------------------------------


def lock_path() -> Path:
    """This host's lock file (see the module's docstring)."""
    directory = next((d for d in LOCK_DIRECTORIES if d.is_dir()), LOCK_DIRECTORIES[-1])
    try:
        netns: int | None = Path("/proc/self/ns/net").stat().st_ino
    except OSError:
        netns = None
    return directory / lock_name(netns)


class RunLock:
    """The agent's side of the run lock: taken once, held until the agent exits."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or lock_path()
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def take(self, holder: Holder, *, force: bool) -> str | None:
        """Take the lock for ``holder``; None once held. When another process holds it: with
        ``force``, the one-line description of that holder (the run goes on without the lock),
        else ``DriverError("busy", ...)`` naming the holder."""
        if self._fd is not None:
            return None
        try:
            fd = self._open()
        except OSError as exc:
            held_by = self._unusable(exc)
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    os.close(fd)
                    raise
                held_by = self._held_by(fd)
                os.close(fd)
            else:
                self._fd = fd
        if self._fd is None:
            if force:
                return held_by
            raise DriverError(KIND_BUSY, refusal(held_by))
        self._describe(fd, Holder(holder.operator, holder.coordinator_pid, holder.since,
                                  agent_pid=os.getpid()))  # fmt: skip
        return None

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # releases the lock

    def _open(self) -> int:
        """Open the lock file, creating it writable by every user (``O_CREAT`` only when it
        does not exist: Linux's protected_regular refuses it on another user's file)."""
        flags = os.O_NOFOLLOW | os.O_CLOEXEC
        for _attempt in range(3):
            try:
                return os.open(self.path, os.O_RDWR | flags)
            except PermissionError:
                return os.open(self.path, os.O_RDONLY | flags)  # lockable, if not describable
            except FileNotFoundError:
                pass
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | flags, 0o666)
            except FileExistsError:
                continue  # another agent created it meanwhile
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o666)  # past the umask: any user's agent describes itself here
            return fd
        raise OSError(errno.EAGAIN, "the lock file keeps appearing and vanishing")

    def _describe(self, fd: int, holder: Holder) -> None:
        text = (json.dumps(holder.to_json()) + "\n").encode()
        with contextlib.suppress(OSError):  # a read-only descriptor: the kernel still names us
            os.ftruncate(fd, 0)
            os.pwrite(fd, text, 0)

    def _held_by(self, fd: int) -> str:
        try:
            text = os.pread(fd, MAX_DESCRIPTION, 0).decode("utf-8", "replace")
        except OSError:
            text = ""
        return who_holds(parse_holder(text), self._holders(os.fstat(fd)))

    def _holders(self, info: os.stat_result) -> list[ProcessFacts]:
        try:
            text = Path("/proc/locks").read_text()
        except OSError:
            return []
        pids = lock_pids(text, os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
        return [process_facts(pid) for pid in pids if pid != os.getpid()]

    def _unusable(self, exc: OSError) -> str:
        """Why the lock file cannot be used, naming its owner."""
        reason = exc.strerror or str(exc)
        try:
            info = os.lstat(self.path)
        except OSError:
            return f"locked out: its run lock {self.path} cannot be opened ({reason})"
        return (
            f"locked out: its run lock {self.path} cannot be opened ({reason}; owned by "
            f"{user_name(info.st_uid)}, {stat.filemode(info.st_mode)})"
        )


def process_facts(pid: int) -> ProcessFacts:
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            return ProcessFacts(pid, user=process.username(), command=process.name(),
                                started=utc_text(process.create_time()))  # fmt: skip
    except psutil.Error:
        return ProcessFacts(pid)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
