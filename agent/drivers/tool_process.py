"""Running an external load tool from a load process: spawned so it dies with that process,
bounded by a deadline, stoppable, its output kept in files (never a full pipe).

The kit's load processes are Python (:mod:`agent.drivers.kit.child`); an external tool is
their child. It asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG`` from
``preexec_fn``), so nothing outlives the agent, and its argv goes to ``execve`` as a list:
never through a shell.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

_PR_SET_PDEATHSIG: Final = 1
#: How often a running tool is checked for its end and the agent for a stop.
POLL_S: Final = 0.05


def die_with_parent() -> None:
    """``preexec_fn`` of a tool: SIGKILL when the load process that started it ends."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(frozen=True)
class ToolRun:
    """One run of a tool: its exit status (None: killed by coord), output, and instants
    (``time.time_ns()``) of its spawn and of its exit seen by coord."""

    status: int | None
    stdout: str
    stderr: str
    spawned_ns: int
    ended_ns: int
    why_killed: str | None = None  # "deadline" or "stop" when coord killed it

    @property
    def wall_s(self) -> float:
        return (self.ended_ns - self.spawned_ns) / 1e9


def run_tool(argv: Sequence[str], deadline_ns: int,
             stop_requested: Callable[[], bool] = lambda: False) -> ToolRun:
    """Run ``argv`` until it exits, ``deadline_ns`` (wall clock) passes, or ``stop_requested``;
    the last two kill it (SIGKILL: the tool has nothing coord could still read)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        spawned_ns = time.time_ns()
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, close_fds=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (the load process is single-threaded)
        )
        why_killed = None
        try:
            while True:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(POLL_S)
                    break
                if time.time_ns() >= deadline_ns:
                    why_killed = "deadline"
                elif stop_requested():
                    why_killed = "stop"
                if why_killed is not None:
                    process.kill()
                    process.wait()
                    break
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        ended_ns = time.time_ns()
        out.seek(0)
        err.seek(0)
        return ToolRun(
            status=None if why_killed else process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            spawned_ns=spawned_ns,
            ended_ns=ended_ns,
            why_killed=why_killed,
        )
