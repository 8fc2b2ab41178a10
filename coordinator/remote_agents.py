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
from coordinator.ssh import SSHHost

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
