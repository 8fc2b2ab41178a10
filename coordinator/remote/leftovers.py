"""Agents found on a host without a link to them: left by another coord process.

`coord deploy --hold` in one terminal leaves agents that `coord agents stop` in another must be
able to stop. The agent writes ``agent.pid`` (its pid, which is also its process group, and
its port) in its state directory; these helpers read it over SSH with the host's own Python
and signal the whole group. They never trust the pid file blindly: the process must still be a
coord agent of this user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from agent import protocol
from coordinator.core.errors import RemoteCommandFailed
from coordinator.remote.ssh import SSHHost

STOP_TIMEOUT = 10.0
"""Seconds an agent's process group gets to exit after SIGTERM, before SIGKILL."""

_STOP_SCRIPT = """\
import json, os, signal, sys, time
state_dir, pid_name, grace = os.path.expanduser(sys.argv[1]), sys.argv[2], float(sys.argv[3])
path = os.path.join(state_dir, pid_name)
try:
    with open(path) as handle:
        pid = int(json.load(handle)["pid"])
except (OSError, ValueError, KeyError, TypeError):
    print(json.dumps({"found": False}))
    sys.exit(0)
def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""
def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
line = cmdline(pid)
if "agent.__main__" not in line or " serve" not in line:
    os.unlink(path)
    print(json.dumps({"found": False, "stale": pid}))
    sys.exit(0)
try:
    os.killpg(pid, signal.SIGTERM)
except ProcessLookupError:
    pass
deadline = time.monotonic() + grace
while group_alive(pid) and time.monotonic() < deadline:
    time.sleep(0.05)
killed = group_alive(pid)
if killed:
    os.killpg(pid, signal.SIGKILL)
print(json.dumps({"found": True, "pid": pid, "killed": killed}))
"""
"""argv: state_dir pid_file_name grace. Stops the agent's process group; prints JSON."""

_TAIL_SCRIPT = """\
import collections, os, sys
path = os.path.join(os.path.expanduser(sys.argv[1]), sys.argv[2])
try:
    with open(path, encoding="utf-8", errors="replace") as handle:
        sys.stdout.write("log\\n" + "".join(collections.deque(handle, int(sys.argv[3]))))
except FileNotFoundError:
    sys.stdout.write("missing\\n")
"""
"""argv: state_dir log_name lines. First line ``log`` (then the lines) or ``missing``."""


_PROBE_SCRIPT = """\
import json, os, sys
path = os.path.join(os.path.expanduser(sys.argv[1]), sys.argv[2])
try:
    with open(path) as handle:
        record = json.load(handle)
    pid, port = int(record["pid"]), int(record["port"])
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
        argv = handle.read().decode("utf-8", "replace").split("\\0")
    with open("/proc/%d/stat" % pid) as handle:
        started = int(handle.read().rpartition(")")[2].split()[19])
    with open("/proc/uptime") as handle:
        booted = float(handle.read().split()[0])
    with open("/proc/%d/status" % pid) as handle:
        rss = [line.split()[1] for line in handle if line.startswith("VmRSS:")]
except (OSError, ValueError, KeyError, TypeError, IndexError):
    print(json.dumps({"found": False}))
    sys.exit(0)
print(json.dumps({"found": True, "pid": pid, "port": port, "argv": argv,
                  "uptime_s": booted - started / os.sysconf("SC_CLK_TCK"),
                  "rss_bytes": int(rss[0]) * 1024 if rss else 0}))
"""
"""argv: state_dir pid_file_name. Describes the process the pid file names, if it lives."""


@dataclass(frozen=True)
class HeldAgent:
    """An agent running on a host without a link from this coord process (``--hold``)."""

    pid: int
    port: int
    uptime_s: float
    rss_bytes: int
    bundle_hash: str | None


def held_agent(answer: dict[str, object]) -> HeldAgent | None:
    """The agent the probe found, or None: no pid file, a dead process, or a process that is
    not a coord agent serving (a recycled pid). Pure."""
    argv = answer.get("argv")
    if not answer.get("found") or not isinstance(argv, list):
        return None
    words = [str(word) for word in argv]
    if "serve" not in words or not any("agent.__main__" in word for word in words):
        return None
    bundle = None
    if "--bundle-hash" in words[:-1]:
        bundle = words[words.index("--bundle-hash") + 1]
    pid, port, uptime, rss = (answer.get(key) for key in ("pid", "port", "uptime_s", "rss_bytes"))
    if not (isinstance(pid, int) and isinstance(port, int) and isinstance(rss, int)
            and isinstance(uptime, int | float)):
        return None
    return HeldAgent(pid, port, float(uptime), rss, bundle)


def find_held_agent(ssh: SSHHost, state_dir: str) -> HeldAgent | None:
    """The live agent named by the host's pid file, if any; changes nothing on the host."""
    stdout, _ = ssh.run([ssh.python, "-I", "-c", _PROBE_SCRIPT, state_dir, protocol.PID_FILE])
    answer = json.loads(stdout.strip().splitlines()[-1])
    return held_agent(answer if isinstance(answer, dict) else {})


@dataclass(frozen=True)
class StrayStop:
    """What stopping a host's leftover agent did."""

    found: bool
    pid: int | None = None
    killed: bool = False
    """The group ignored SIGTERM for ``STOP_TIMEOUT`` and was killed."""


def stop_stray_agent(ssh: SSHHost, state_dir: str) -> StrayStop:
    """Stop the agent named by the host's pid file, with its whole process group."""
    stdout, _ = ssh.run(
        [ssh.python, "-I", "-c", _STOP_SCRIPT, state_dir, protocol.PID_FILE, str(STOP_TIMEOUT)],
        timeout=STOP_TIMEOUT + 30,
    )
    answer = json.loads(stdout.strip().splitlines()[-1])
    return StrayStop(bool(answer.get("found")), answer.get("pid"), bool(answer.get("killed")))


def agent_log(ssh: SSHHost, state_dir: str, lines: int) -> str | None:
    """The last ``lines`` lines of the host's agent log, or None when there is none."""
    stdout, _ = ssh.run(
        [ssh.python, "-I", "-c", _TAIL_SCRIPT, state_dir, protocol.LOG_FILE, str(lines)]
    )
    head, _, body = stdout.partition("\n")
    return body if head == "log" else None


_CLEAN_SCRIPT = """\
import json, os, shutil, sys
path = os.path.expanduser(sys.argv[1])
home = os.path.realpath(os.path.expanduser("~"))
if not os.path.lexists(path):
    print(json.dumps({"removed": False}))
    sys.exit(0)
if os.path.islink(path) or not os.path.isdir(path):
    print(json.dumps({"refused": "%s is a symbolic link or not a directory" % path}))
    sys.exit(0)
real = os.path.realpath(path)
if real == "/" or real == home or (home + "/").startswith(real.rstrip("/") + "/"):
    print(json.dumps({"refused": "%s is or holds the home directory" % real}))
    sys.exit(0)
files = size = 0
for root, dirs, names in os.walk(real):
    for name in names:
        files += 1
        try:
            size += os.lstat(os.path.join(root, name)).st_size
        except OSError:
            pass
shutil.rmtree(real)
print(json.dumps({"removed": True, "path": real, "files": files, "bytes": size}))
"""
"""argv: cache_dir. Removes it whole unless it is a link, the home directory or above it."""


@dataclass(frozen=True)
class Cleaned:
    """What `coord agents clean` did on one host."""

    stopped: StrayStop
    removed: bool
    path: str | None = None
    files: int = 0
    size_bytes: int = 0


def clean_host(ssh: SSHHost, cache_dir: str, state_dir: str) -> Cleaned:
    """Stop the host's agent (its pid file is in ``state_dir``), if any, then remove coord's
    cache directory (nothing else).

    The caller has checked that ``cache_dir`` is clearly coord's (:mod:`.cache_dir`);
    the host checks again once ``~`` is expanded and links resolved.
    """
    stopped = stop_stray_agent(ssh, state_dir)
    stdout, _ = ssh.run([ssh.python, "-I", "-c", _CLEAN_SCRIPT, cache_dir])
    answer = json.loads(stdout.strip().splitlines()[-1])
    if "refused" in answer:
        raise RemoteCommandFailed(ssh.name, f"agent.cache_dir: not removed: {answer['refused']}")
    return Cleaned(stopped, bool(answer.get("removed")), answer.get("path"),
                   int(answer.get("files", 0)), int(answer.get("bytes", 0)))
