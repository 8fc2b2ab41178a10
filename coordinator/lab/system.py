"""The system calls the lab needs, kept thin: commands, processes, links, users, cgroups.

Every command runs from an argument list (never a shell) through :func:`run`, which turns a
failure into :class:`CommandFailed`, a ``LabError`` whose one-line message names the command
and the last line of its standard error. Waiting is always polling with a deadline
(:func:`wait_until`), never a bare sleep.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from coordinator.core.errors import LabError, last_line
from coordinator.lab.plan import LabPaths, LabState, state_from_json, state_to_json

COMMAND_TIMEOUT = 30.0
"""Seconds any one command may take."""
START_TIMEOUT = 10.0
"""Seconds a daemon (sshd, redis-server) may take to answer after it was started."""
TERM_TIMEOUT = 5.0
"""Seconds processes get to exit after SIGTERM before they receive SIGKILL."""
KILL_TIMEOUT = 5.0
POLL_INTERVAL = 0.01

NETNS_DIR = Path("/run/netns")
SYS_NET = Path("/sys/class/net")
PROC = Path("/proc")
CGROUP_MOUNT = Path("/sys/fs/cgroup")
TOOL_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
INSTALL_HINT = "install them with `sudo scripts/install-system-packages`"

TOOLS: dict[str, str] = {
    "ip": "iproute2",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "redis-server": "redis-server",
    "netperf": "netperf",
    "netserver": "netperf",
    "setpriv": "util-linux",
    "useradd": "passwd",
    "userdel": "passwd",
    "groupdel": "passwd",
}
"""Executables the lab runs or needs present, and the Debian package that provides each."""


class CommandFailed(LabError):
    """A command exited with an error; the message is one line."""

    def __init__(self, argv: Sequence[str], returncode: int | None, detail: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.detail = detail
        status = "timed out" if returncode is None else f"exit {returncode}"
        message = f"`{shlex.join(self.argv)}` failed ({status})"
        super().__init__(f"{message}: {detail}" if detail else message)


def run(
    argv: Sequence[str], *, check: bool = True, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with stdin closed and output captured; raise CommandFailed on error.

    A bare program name is looked up in PATH and then the system's sbin directories, which
    ``sudo`` and cron do not always put in PATH.
    """
    argv = list(argv)
    if argv and "/" not in argv[0]:
        argv[0] = find_tool(argv[0]) or argv[0]
    try:
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(argv, None, f"no answer within {timeout:g}s") from exc
    except OSError as exc:
        raise CommandFailed(argv, None, exc.strerror or str(exc)) from exc
    if check and result.returncode != 0:
        raise CommandFailed(argv, result.returncode, last_line(result.stderr or result.stdout))
    return result


def start_daemon(argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT) -> None:
    """Run a command that daemonizes itself; wait for the foreground part to exit.

    Its output goes to a temporary file rather than a pipe, so a daemon that keeps the
    inherited descriptors open cannot make us wait for end-of-file.
    """
    with tempfile.TemporaryFile(mode="w+") as errors:
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=errors,
                stderr=errors,
                start_new_session=True,
            )
        except OSError as exc:
            raise CommandFailed(argv, None, exc.strerror or str(exc)) from exc
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.wait()
            raise CommandFailed(argv, None, f"no answer within {timeout:g}s") from exc
        if returncode != 0:
            errors.seek(0)
            raise CommandFailed(argv, returncode, last_line(errors.read()))


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true; LabError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL_INTERVAL)


def find_tool(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *TOOL_DIRS])
    return shutil.which(name, path=path)


def check_host() -> None:
    """LabError unless this is Linux and we are root."""
    if not sys.platform.startswith("linux"):
        raise LabError(f"the lab needs Linux network namespaces; this system is {sys.platform}")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, users, daemons): run it with sudo")


def require_tools() -> dict[str, str]:
    """Absolute path of each of :data:`TOOLS`; one LabError naming every missing one and its
    package."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for name, package in TOOLS.items():
        path = find_tool(name)
        if path is None:
            missing.append(f"{name} ({package})")
        else:
            found[name] = path
    if missing:
        raise LabError(f"missing tools for the lab: {', '.join(missing)}; {INSTALL_HINT}")
    return found


# --- files ---------------------------------------------------------------------------------


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` atomically (temporary file then rename) with ``mode``."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise


def give_to(path: Path, user: str) -> None:
    """Make ``path`` owned by ``user`` and its group (a daemon that drops root writes there)."""
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def read_secret(path: Path) -> str | None:
    """A one-line secret file's text without its line ending; None when it cannot be read."""
    try:
        return path.read_text().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None


def make_dir(path: Path, mode: int) -> None:
    """Create ``path`` with exactly ``mode`` (whatever the umask)."""
    path.mkdir(mode=mode)
    path.chmod(mode)


def read_state(paths: LabPaths) -> LabState | None:
    """The lab's state file, None when there is none; LabError when it cannot be used."""
    try:
        text = paths.state_file.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LabError(f"cannot read {paths.state_file}: {exc.strerror}") from None
    try:
        return state_from_json(text)
    except LabError as exc:
        hint = "`coord lab down` removes what is left"
        raise LabError(f"{paths.state_file}: {exc}; {hint}") from None


def write_state(paths: LabPaths, state: LabState) -> None:
    write_file(paths.state_file, state_to_json(state), mode=0o600)


def last_log_line(path: Path) -> str:
    try:
        return last_line(path.read_text(errors="replace"))
    except OSError:
        return ""


def read_pidfile(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


# --- processes -----------------------------------------------------------------------------


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
            netns = _ns_id(entry / "ns" / "net")
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


# --- network -------------------------------------------------------------------------------


def _ns_id(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def namespaces() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    try:
        return sorted(entry.name for entry in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def namespace_id(name: str) -> tuple[int, int] | None:
    return _ns_id(NETNS_DIR / name)


def links() -> list[str]:
    try:
        return sorted(entry.name for entry in SYS_NET.iterdir())
    except FileNotFoundError:
        return []


def link_exists(name: str) -> bool:
    return (SYS_NET / name).exists()


def is_bridge(name: str) -> bool:
    return (SYS_NET / name / "bridge").is_dir()


def link_kind(name: str) -> str | None:
    result = run(["ip", "-j", "-d", "link", "show", "dev", name], check=False)
    if result.returncode != 0:
        return None
    try:
        document: list[dict[str, Any]] = json.loads(result.stdout)
        return str(document[0]["linkinfo"]["info_kind"])
    except (ValueError, LookupError, TypeError):
        return None


def ipv4_addresses() -> list[tuple[str, str]]:
    """Every IPv4 address of the root namespace as ``(interface, "address/prefix")``."""
    document: list[dict[str, Any]] = json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout)
    return [
        (str(link["ifname"]), f"{info['local']}/{info['prefixlen']}")
        for link in document
        for info in link.get("addr_info", [])
        if info.get("family") == "inet"
    ]


def tcp_listening(pid: int, address: str, port: int) -> bool:
    """Whether the network namespace of ``pid`` has a TCP socket listening on address:port."""
    wanted = f"{int.from_bytes(socket.inet_aton(address), sys.byteorder):08X}:{port:04X}"
    try:
        table = (PROC / str(pid) / "net" / "tcp").read_text()
    except OSError:
        return False
    listen = "0A"
    return any(
        fields[1] == wanted and fields[3] == listen
        for fields in (line.split() for line in table.splitlines()[1:])
        if len(fields) > 3
    )


def redis_ping(
    address: str, port: int, *, device: str, password: str | None = None, timeout: float = 1.0
) -> bool:
    """Whether a RESP server answers PING on address:port (after AUTH with ``password``),
    reached through ``device`` only.

    The socket is bound to the lab's bridge, so a probe of a half-built lab can never leave
    the machine by the default route.
    """
    request, expected = _resp_command("PING"), b"+PONG\r\n"
    if password is not None:
        request, expected = _resp_command("AUTH", password) + request, b"+OK\r\n" + expected
    received = b""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as connection:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
            connection.settimeout(timeout)
            connection.connect((address, port))
            connection.sendall(request)
            while len(received) < len(expected) and expected.startswith(received):
                chunk = connection.recv(64)
                if not chunk:
                    break
                received += chunk
    except OSError:
        return False
    return received == expected


def _resp_command(*words: str) -> bytes:
    encoded = [word.encode() for word in words]
    return f"*{len(encoded)}\r\n".encode() + b"".join(
        b"$%d\r\n%s\r\n" % (len(word), word) for word in encoded
    )


# --- users ---------------------------------------------------------------------------------


def users_with_comment(comment: str) -> list[pwd.struct_passwd]:
    return [entry for entry in pwd.getpwall() if entry.pw_gecos == comment]


def user_entry(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


# --- cgroups -------------------------------------------------------------------------------

CgroupVersion = Literal["v1", "v2"]


@dataclass(frozen=True)
class CpuCgroupRoot:
    version: CgroupVersion
    path: Path


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
            return CpuCgroupRoot("v1", Path(fields[1]))
    return None


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
