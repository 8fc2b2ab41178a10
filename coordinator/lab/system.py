"""The system calls the lab needs, kept thin: commands, daemons, tools, files, users.

Every command runs from an argument list (never a shell) through :func:`run`, which turns a
failure into :class:`CommandFailed`, a ``LabError`` whose one-line message names the command
and the last line of its standard error. Waiting is always polling with a deadline
(:func:`wait_until`), never a bare sleep. Processes, the network and cgroups have modules of
their own (``lab.processes``, ``lab.network``, ``lab.cgroups``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from coordinator.core.errors import LabError, last_line
from coordinator.lab.plan import LabPaths
from coordinator.lab.state import LabState, state_from_json, state_to_json

COMMAND_TIMEOUT = 30.0
"""Seconds any one command may take."""
START_TIMEOUT = 10.0
"""Seconds a daemon (sshd, redis-server) may take to answer after it was started."""
TERM_TIMEOUT = 5.0
"""Seconds processes get to exit after SIGTERM before they receive SIGKILL."""
KILL_TIMEOUT = 5.0
POLL_INTERVAL = 0.01

PROC = Path("/proc")
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
    argv: Sequence[str], *, check: bool = True, timeout: float = COMMAND_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with stdin closed and output captured; raise CommandFailed on error.
    ``env``: variables added to this process's environment (a secret the command reads there
    rather than from its command line).

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
            env={**os.environ, **env} if env is not None else None,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(argv, None, f"no answer within {timeout:g}s") from exc
    except OSError as exc:
        raise CommandFailed(argv, None, exc.strerror or str(exc)) from exc
    if check and result.returncode != 0:
        raise CommandFailed(argv, result.returncode, last_line(result.stderr or result.stdout))
    return result


def start_daemon(argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT,
                 env: Mapping[str, str] | None = None) -> None:
    """Run a command that daemonizes itself; wait for the foreground part to exit.
    ``env``: the daemon's whole environment (None: this process's).

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
                env=dict(env) if env is not None else None,
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


CLUSTER_TOOLS: dict[str, str] = {"redis-cli": "redis-tools"}
"""What ``--cluster`` needs besides :data:`TOOLS` (``redis-cli --cluster create``)."""


def require_tools(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Absolute path of each of :data:`TOOLS` (and ``extra``); one LabError naming every
    missing one and its package."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for name, package in {**TOOLS, **(extra or {})}.items():
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


# --- users ---------------------------------------------------------------------------------


def users_with_comment(comment: str) -> list[pwd.struct_passwd]:
    return [entry for entry in pwd.getpwall() if entry.pw_gecos == comment]


def user_entry(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None
