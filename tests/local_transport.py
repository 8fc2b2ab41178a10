"""A transport that starts real agents on this machine, for tests of the run without root.

Behind the same seam as the SSH deployment (:class:`coordinator.remote.deploy.Transport`): each
"host" is a ``python -m agent serve`` subprocess of the checkout, linked over a loopback socket
instead of an SSH-forwarded channel. Each host gets its own state directory and run-lock
directory (a real host has its own ``/run/lock``), and a test may skew one host's agent (its
sampling interval, or a load that overruns its planned end) to provoke what the run must catch.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from coordinator.inventory.schema import Host, Inventory
from coordinator.remote.agent_link import AgentLink, new_token, parse_ready_line, startup_line
from coordinator.remote.deploy import PlacedAgent
from coordinator.remote.fanout import StageReporter
from tests.helpers import process_gone, read_fd_line

REPO = Path(__file__).parents[1]
READY_DEADLINE = 30.0

AGENT_PROGRAM = """
import dataclasses, json, sys
from pathlib import Path
options = json.loads(sys.argv[1])
import agent.runlock
agent.runlock.LOCK_DIRECTORIES = (Path(options["lock_dir"]),)
import agent.load, agent.drivers.spec
parse = agent.drivers.spec.parse_spec
def skewed(text):
    spec = parse(text)
    line = spec.timeline
    divisor, overrun = options.get("interval_divisor", 1), options.get("overrun", 1)
    line = dataclasses.replace(line, interval_ns=line.interval_ns // divisor,
                               warmup_intervals=line.warmup_intervals * divisor,
                               measure_intervals=line.measure_intervals * divisor * overrun)
    return dataclasses.replace(spec, timeline=line)
agent.load.parse_spec = skewed
from agent.__main__ import run
run(sys.argv[2:])
"""


@dataclass(frozen=True)
class Skew:
    """What one host's agent does wrong: sample every ``1/interval_divisor`` of the interval
    asked for, or run its load ``overrun`` times longer than planned."""

    interval_divisor: int = 1
    overrun: int = 1


class LocalProcess:
    """An agent subprocess, as the fleet sees a remote one: its stdin is its lifeline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(str(exc)) from None

    def close(self) -> None:
        self.close_stdin()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class NoConnection:
    """Nothing to close: the link is a plain loopback socket, closed with the link."""

    def close(self) -> None:
        pass


@dataclass
class LocalTransport:
    """Start each host's agent here; keeps every process it started, for the test's checks."""

    root: Path
    skews: dict[str, Skew] = field(default_factory=dict)
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def place(self, host: Host, inventory: Inventory, report: StageReporter) -> PlacedAgent:
        report("starting agent", "local")
        skew = self.skews.get(host.name, Skew())
        lock_dir = self.root / host.name / "lock"
        lock_dir.mkdir(parents=True, exist_ok=True)
        options = {"lock_dir": str(lock_dir), "interval_divisor": skew.interval_divisor,
                   "overrun": skew.overrun}
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env["PYTHONPATH"] = str(REPO)
        proc = subprocess.Popen(
            [sys.executable, "-c", AGENT_PROGRAM, json.dumps(options), "serve",
             "--watchdog", repr(inventory.agent.watchdog),
             "--state-dir", str(self.root / host.name / "state")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, cwd=self.root, bufsize=0)
        self.agents[host.name] = proc
        assert proc.stdin is not None and proc.stdout is not None
        token = new_token()
        proc.stdin.write(startup_line(token))
        proc.stdin.flush()
        ready = parse_ready_line(read_fd_line(proc.stdout.fileno(), READY_DEADLINE).decode(),
                                 host.name)
        link = AgentLink.connect_tcp(host.name, ready.port, token)
        return PlacedAgent(NoConnection(), None, LocalProcess(proc), link)

    def family(self) -> list[int]:
        """The pids of every agent started and of their load processes still alive."""
        pids = []
        for proc in self.agents.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                parent = psutil.Process(proc.pid)
                pids += [proc.pid, *(child.pid for child in parent.children(recursive=True))]
        return [pid for pid in pids if not process_gone(pid)]

    def kill_all(self) -> None:
        """Leave nothing running, whatever the test did (each agent leads its group)."""
        for proc in self.agents.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(READY_DEADLINE)
