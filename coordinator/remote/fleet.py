"""The agents of a run: started on every host in parallel, watched, and always stopped.

A :class:`Fleet` is a context manager. Entering it deploys and starts an agent on each selected
host (connect → check Python → bundle → start → link → clock), keeping going when some hosts
fail; leaving it stops every agent it started, whatever happened in between (an exception,
Ctrl-C). Heartbeats keep agents alive while the fleet is open; an agent that stops answering is
reported by name through :meth:`Fleet.lost`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from coordinator.core.clock import ClockEstimate
from coordinator.core.errors import AgentError, AgentLost, CoordError, UsageError
from coordinator.inventory.schema import Host, Inventory
from coordinator.remote.agent_link import (
    AgentInfo,
    AgentLink,
    AgentStatus,
    Heartbeater,
    measure_offset,
)
from coordinator.remote.deploy import (
    AgentProcess,
    Deployment,
    DeployOptions,
    HostConnection,
    PlacedAgent,
    SSHTransport,
    Transport,
)
from coordinator.remote.fanout import FleetResult, ProgressView, StageReporter, fan_out

CLOCK_ROUNDS = 8
"""Round trips used to estimate each agent's clock offset (the smallest one wins)."""
HOLD_POLL_S = 1.0
"""How often a held fleet looks for lost agents besides being woken by a loss."""
AGENT_EXIT_TIMEOUT = 10.0
"""Seconds an agent has to exit after being told to stop, before its stdin is closed."""


@dataclass
class AgentSession:
    """One host's live agent: its connection, process, link, heartbeats and clock."""

    host: Host
    connection: HostConnection
    deployment: Deployment | None
    """What was shipped to the host (None: nothing was, the transport runs a local agent)."""
    process: AgentProcess
    link: AgentLink
    info: AgentInfo
    clock: ClockEstimate
    heartbeater: Heartbeater

    def stop(self) -> None:
        """Ask the agent to exit, wait for it, and close the connection; never raises.

        An idle link carries the request (``stop()``). A busy one (a preload still running
        after Ctrl-C) would queue it behind the pending call, so the link is closed instead,
        which fails the pending call at once, and the end of the agent's stdin stops it. A lost
        agent is not waited for: nothing it could say would arrive; its own watchdog stops it
        (and its load processes) when no request has reached it for its period.
        """
        self.heartbeater.stop(timeout=0)
        if self.link.loss is None and not self.link.busy:
            with contextlib.suppress(CoordError, OSError, EOFError):
                self.link.stop()
        self.link.close()
        self.heartbeater.stop()  # its call, if any, failed when the link closed
        if self.link.loss is None:
            with contextlib.suppress(OSError, EOFError):
                self.process.close_stdin()
            with contextlib.suppress(TimeoutError, OSError, EOFError):
                self.process.wait(AGENT_EXIT_TIMEOUT)
        self.process.close()
        self.connection.close()


def select_hosts(inventory: Inventory, names: Sequence[str] | None) -> list[Host]:
    """The inventory's hosts, or the named subset (``UsageError`` for an unknown name)."""
    if not names:
        return list(inventory.hosts)
    known = {host.name: host for host in inventory.hosts}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(
            f"--hosts: no host named {', '.join(map(repr, unknown))} in the inventory "
            f"(hosts: {', '.join(known)})"
        )
    return [known[name] for name in dict.fromkeys(names)]


class Fleet:
    """Agents on a set of hosts; use as ``with Fleet(...) as fleet:``."""

    def __init__(
        self,
        inventory: Inventory,
        hosts: Sequence[Host] | None = None,
        options: DeployOptions | None = None,
        view: ProgressView | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.inventory = inventory
        self.hosts = list(hosts if hosts is not None else inventory.hosts)
        self.options = options or DeployOptions()
        self.transport = transport or SSHTransport(self.options)
        self.view = view
        self.sessions: dict[str, AgentSession] = {}
        self.start_result: FleetResult[AgentSession] = FleetResult()
        self._lost: dict[str, AgentError] = {}
        self._lost_event = threading.Event()
        self._lock = threading.Lock()

    def __enter__(self) -> Fleet:
        try:
            self.start()
        except BaseException:  # Ctrl-C while deploying: stop the agents already started
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def start(self) -> FleetResult[AgentSession]:
        """Start agents on every host in parallel (through the transport: deploy over SSH by
        default); failures stay per host."""
        by_name = {host.name: host for host in self.hosts}

        def one(name: str, report: StageReporter) -> AgentSession:
            host = by_name[name]
            placed = self.transport.place(host, self.inventory, report)
            try:
                session = self._session(host, placed, report)
            except BaseException:
                placed.connection.close()
                raise
            with self._lock:
                self.sessions[name] = session
            return session

        self.start_result = fan_out(list(by_name), one, self.view)
        return self.start_result

    def _session(self, host: Host, placed: PlacedAgent, report: StageReporter) -> AgentSession:
        """Check the placed agent's bundle, measure its clock and start its heartbeats."""
        deployment = placed.deployment
        try:
            info = placed.link.hello()
            if deployment is not None and info.bundle_hash != deployment.bundle.hash:
                raise AgentError(host.name, f"the agent runs bundle {info.bundle_hash}, "
                                            f"not {deployment.bundle.hash}")
            report("clock", f"{CLOCK_ROUNDS} round trips")
            clock = measure_offset(placed.link, CLOCK_ROUNDS)
        except BaseException:
            placed.link.close()
            placed.process.close()
            raise
        heartbeater = Heartbeater(placed.link, on_lost=self._on_lost).start()
        return AgentSession(host, placed.connection, deployment, placed.process, placed.link,
                            info, clock, heartbeater)

    def _on_lost(self, error: AgentError) -> None:
        with self._lock:
            self._lost[error.host] = error
        self._lost_event.set()

    def wait_for_loss(self, timeout: float | None = None) -> dict[str, AgentError]:
        """Block until an agent is lost (or ``timeout``); return every loss so far."""
        self._lost_event.wait(timeout)
        return self.lost()

    def hold(self, on_lost: Callable[[str, AgentError], None]) -> None:
        """Keep the agents running until every one is lost (or Ctrl-C), reporting each loss
        once, by host name."""
        reported: set[str] = set()
        while self.sessions.keys() - reported:
            # Cleared each round: once set by a first loss, the event would never block again.
            self._lost_event.wait(HOLD_POLL_S)
            self._lost_event.clear()
            for name, error in self.lost().items():
                if name not in reported:
                    on_lost(name, error)
                    reported.add(name)

    def lost(self) -> dict[str, AgentError]:
        """Agents that stopped answering, by host name."""
        with self._lock:
            return dict(self._lost)

    def status(self) -> FleetResult[AgentStatus]:
        """Every live agent's status; an agent that does not answer is a failure, named."""
        sessions = dict(self.sessions)

        def one(name: str, report: StageReporter) -> AgentStatus:
            report("status")
            try:
                return sessions[name].link.status()
            except AgentLost as exc:
                self._on_lost(exc)
                raise
        return fan_out(list(sessions), one)

    def stop(self) -> FleetResult[None]:
        """Stop every agent this fleet started, in parallel; idempotent."""
        with self._lock:
            sessions, self.sessions = dict(self.sessions), {}

        def one(name: str, report: StageReporter) -> None:
            report("stopping")
            sessions[name].stop()

        return fan_out(list(sessions), one)

