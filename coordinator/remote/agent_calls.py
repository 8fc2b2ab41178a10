"""The agent's remote methods as typed calls: the coordinator's half of :mod:`agent.api`.

Each call sends its request message (:mod:`agent.messages`) as JSON text, reads the answer's
envelope with the same definitions the agent encoded it with, and returns the message. A
refusal the agent answers as data (a driver's ``Failure``: kind and message) leaves as
:class:`LoadError`; an answer that does not match its declaration as ``AgentError`` naming the
field. :class:`AgentCalls` is the base of :class:`coordinator.remote.agent_link.AgentLink`,
which carries the calls.
"""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

from agent import api
from agent.drivers.intervals import LoadReport
from agent.messages import (
    AgentInfo,
    AgentStatus,
    BaselineTools,
    DescribeRequest,
    Failure,
    FindBaselineTools,
    LoadProgress,
    LoadState,
    MessageError,
    NetperfResult,
    NoRequest,
    PlatformDescription,
    Prepared,
    RunNetperf,
    ServerProbe,
    StartLoad,
    StartNetserver,
    decode_reply,
    to_text,
)
from agent.metrics.model import MetricsInterval, MetricsPlan, MetricsReport
from agent.runlock import Holder
from coordinator.core.errors import AgentError, AgentLost

__all__ = [
    "LOAD_PREPARE_TIMEOUT",
    "LOAD_REPORT_TIMEOUT",
    "LOAD_STOP_TIMEOUT",
    "AgentCalls",
    "AgentInfo",
    "AgentStatus",
    "LoadError",
    "LoadProgress",
    "shown",
]

Answer = TypeVar("Answer")

#: Longest wait for ``prepare_load`` (connections, keyspace preload; the agent gives up after
#: 600 s itself), ``stop_load`` and ``load_report`` (merging a long run's intervals).
LOAD_PREPARE_TIMEOUT = 660.0
LOAD_STOP_TIMEOUT = 30.0
#: Seconds between two ``load_progress`` calls while the agent prepares a load.
PREPARE_POLL_INTERVAL = 0.1
LOAD_REPORT_TIMEOUT = 120.0
#: Longest wait for ``describe`` (it runs a few tools, each given 5 s at most).
DESCRIBE_TIMEOUT = 120.0
#: Longest wait for a netserver to start (the agent gives up after 10 s) or stop.
NETSERVER_START_TIMEOUT = 30.0
#: Seconds between two ``netperf_result`` calls while a netperf run goes on.
NETPERF_POLL_INTERVAL = 0.2

_SHOWN_JUNK: Final = 120


class LoadError(AgentError):
    """The agent's load driver refused or failed: ``kind`` (``config``, ``unreachable``,
    ``auth``, ``server``, ``state``, ``worker``...) and a one-line ``message`` for the user,
    e.g. ``client1: cannot authenticate to 198.18.0.10:6379: WRONGPASS invalid ...``."""

    def __init__(self, host: str, kind: str, message: str) -> None:
        self.kind = kind
        self.message = message
        super().__init__(host, message)


class AgentCalls(abc.ABC):
    """Typed calls over :meth:`call` / :meth:`call_within`, which carry plain data."""

    host: str
    request_timeout: float

    @abc.abstractmethod
    def call(self, name: str, *args: object) -> object:
        """The agent method ``name``'s plain-data answer to plain-data ``args``."""

    @abc.abstractmethod
    def call_within(self, name: str, timeout: float, *args: object) -> object:
        """:meth:`call`, waiting up to ``timeout`` seconds for the answer."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the link (the agent keeps running)."""

    def ask(
        self,
        method: api.Method[Any, Answer],
        request: object = NoRequest(),
        timeout: float | None = None,
    ) -> Answer:
        """Call ``method`` with its ``request`` (a message, or text it reads itself); its
        answer message. ``LoadError`` when the agent refuses, ``AgentError`` for junk."""
        args: tuple[object, ...] = ()
        if method.takes_request:
            args = (request if type(request) is str else to_text(request),)
        if timeout is None:
            raw = self.call(method.name, *args)
        else:
            raw = self.call_within(method.name, timeout, *args)
        if type(raw) is not str:
            raise AgentError(self.host, f"{method.name}() answered {shown(raw)}, not JSON text")
        try:
            reply = decode_reply(method.answer, raw)
        except MessageError as exc:
            raise AgentError(self.host, f"{method.name}() answered junk: {exc}") from None
        if isinstance(reply, Failure):
            raise LoadError(self.host, reply.kind, reply.message)
        return reply

    def hello(self) -> AgentInfo:
        return self.ask(api.HELLO)

    def heartbeat(self) -> int:
        """Keep the agent's watchdog quiet; returns the agent's ``time.time_ns()``."""
        return self.ask(api.HEARTBEAT).time_ns

    def clock(self) -> int:
        """The agent's ``time.time_ns()``."""
        return self.ask(api.CLOCK).time_ns

    def status(self) -> AgentStatus:
        return self.ask(api.STATUS)

    def stop(self) -> None:
        """Ask the agent to stop (it answers first, then stops its processes and exits) and
        close the link. An agent that vanishes while answering has stopped too."""
        with contextlib.suppress(AgentLost):
            self.ask(api.STOP)
        self.close()

    # --- load (agent.load) -----------------------------------------------------------------

    def take_run_lock(self, holder: Holder, *, force: bool) -> str | None:
        """Take the host's run lock for ``holder`` (held until the agent exits); ``LoadError``
        of kind ``busy`` naming whoever holds it, or with ``force``, who held it (None when
        this run holds the lock)."""
        request = api.TakeRunLock(holder=holder, force=force)
        return self.ask(api.TAKE_RUN_LOCK, request, self.request_timeout).forced_over

    def prepare_load(self, spec_json: str,
                     on_progress: Callable[[LoadProgress], None] | None = None) -> Prepared:
        """Prepare the load described by ``spec_json``: its processes and connections.

        May take long (preloading the keyspace): the agent prepares in a thread of its own and
        answers at once, so heartbeats keep flowing; this polls ``load_progress`` until the
        preparation is over, then asks ``prepared`` for its answer. ``LoadError`` if the
        agent's driver refuses (wrong password, unreachable target, unsupported parameter...):
        no load has started. ``AgentLost`` (the link closed) if it takes longer than
        :data:`LOAD_PREPARE_TIMEOUT`. ``on_progress`` is given every poll's progress (a
        preload's keys done and to do).
        """
        deadline = time.monotonic() + LOAD_PREPARE_TIMEOUT
        self.ask(api.PREPARE_LOAD, spec_json, self.request_timeout)
        while (progress := self.load_progress()).state is LoadState.PREPARING:
            if on_progress is not None:
                on_progress(progress)
            if time.monotonic() >= deadline:
                self.close()
                raise AgentLost(
                    self.host, f"no answer to prepare_load() within {LOAD_PREPARE_TIMEOUT:g} s"
                )
            time.sleep(PREPARE_POLL_INTERVAL)
        return self.ask(api.PREPARED, timeout=self.request_timeout)

    def start_load(self, t0_agent_ns: int) -> int:
        """Start the prepared load at ``t0_agent_ns`` in the agent's clock; returns at once
        with the start instant the agent accepted."""
        started = self.ask(api.START_LOAD, StartLoad(t0_agent_ns), self.request_timeout)
        return started.t0_ns

    def load_progress(self) -> LoadProgress:
        return self.ask(api.LOAD_PROGRESS, timeout=self.request_timeout)

    def stop_load(self) -> LoadState:
        """Stop the agent's load if one is prepared or running (the interval in progress is
        cut); the state it is in afterwards."""
        return self.ask(api.STOP_LOAD, timeout=LOAD_STOP_TIMEOUT).state

    def load_report(self) -> LoadReport:
        """The finished or stopped load's report, as the agent's own schema
        (``agent/drivers/intervals.py``; ``coordinator.core.stats`` checks its histograms)."""
        return self.ask(api.LOAD_REPORT, timeout=LOAD_REPORT_TIMEOUT)

    def describe(self, server: ServerProbe | None = None) -> PlatformDescription:
        """The host's platform description, and ``server``'s when given (never a failure:
        what the agent cannot read comes back as unknown, with why)."""
        return self.ask(api.DESCRIBE, DescribeRequest(server), DESCRIBE_TIMEOUT)

    # --- the netperf baseline (agent.baseline) ----------------------------------------------

    def baseline_tools(self, search_path: str | None) -> BaselineTools:
        """Where netperf and netserver are on the host (None: not on ``search_path``)."""
        return self.ask(api.BASELINE_TOOLS, FindBaselineTools(search_path), self.request_timeout)

    def start_netserver(self, request: StartNetserver) -> int:
        """Start the host's netserver; its pid, once it listens."""
        return self.ask(api.START_NETSERVER, request, NETSERVER_START_TIMEOUT).pid

    def stop_netserver(self) -> bool:
        """Stop the host's netserver; whether it was still running."""
        return self.ask(api.STOP_NETSERVER, timeout=NETSERVER_START_TIMEOUT).was_running

    def run_netperf(self, request: RunNetperf) -> NetperfResult:
        """One netperf run from this host, polled until it ends (the agent kills a run that
        outlives its length by 30 s, so this ends too)."""
        self.ask(api.START_NETPERF, request, self.request_timeout)
        while True:
            result = self.ask(api.NETPERF_RESULT, timeout=self.request_timeout)
            if result.done:
                return result
            time.sleep(NETPERF_POLL_INTERVAL)

    # --- metrics (agent.metrics) -----------------------------------------------------------

    def start_metrics(self, plan: MetricsPlan) -> None:
        """Start sampling the host (a baseline now; the grid once aligned)."""
        self.ask(api.START_METRICS, plan, self.request_timeout)

    def align_metrics(self, t0_agent_ns: int) -> None:
        """Sample on the grid of the load's T0, ``t0_agent_ns`` in the agent's clock."""
        self.ask(api.ALIGN_METRICS, StartLoad(t0_agent_ns), self.request_timeout)

    def metrics_report(self) -> MetricsReport:
        """Stop sampling; every interval sampled, and Redis INFO on a server host."""
        return self.ask(api.METRICS_REPORT, timeout=LOAD_REPORT_TIMEOUT)

    def latest_metrics(self) -> MetricsInterval | None:
        """The last interval the host's sampler took so far (for the live view)."""
        return self.ask(api.LATEST_METRICS, timeout=self.request_timeout).interval


def shown(value: object) -> str:
    """``value`` for an error message, cut short."""
    text = repr(value)
    return text if len(text) <= _SHOWN_JUNK else text[: _SHOWN_JUNK - 3] + "..."
