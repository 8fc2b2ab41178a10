"""The agent's remote methods, declared once: each one's name, request and answer message.

:mod:`agent.service` serves them (its ``exposed_`` methods are exactly these names) and
:mod:`coordinator.remote.calls` calls them, both from this table. On the wire a request is one
JSON text argument (none for :class:`~agent.messages.NoRequest`) and an answer is JSON text in
the envelope of :func:`agent.messages.encode_answer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from agent.drivers.intervals import LoadReport
from agent.messages import (
    AgentInfo,
    AgentStatus,
    AgentTime,
    BaselineTools,
    DescribeRequest,
    FindBaselineTools,
    LoadProgress,
    LoadStarted,
    LoadStopped,
    MessageError,
    NetperfResult,
    NetperfStarted,
    NetserverStarted,
    NetserverStopped,
    NoRequest,
    PlatformDescription,
    Prepared,
    RunLockTaken,
    RunNetperf,
    StartLoad,
    StartNetserver,
    Stopping,
    from_text,
)
from agent.metrics.model import LatestMetrics, MetricsPlan, MetricsReport, MetricsStarted
from agent.runlock import Holder

Request = TypeVar("Request")
Answer = TypeVar("Answer")


@dataclass(frozen=True)
class TakeRunLock:
    """``take_run_lock()``'s request: who asks for the host, and whether to go on without the
    lock when another process holds it."""

    holder: Holder
    force: bool


@dataclass(frozen=True)
class Method(Generic[Request, Answer]):
    """One remote method. A ``request`` of ``str`` is text its handler reads itself (the
    load spec, read by :func:`agent.drivers.spec.parse_spec` with its own errors)."""

    name: str
    request: type[Request]
    answer: type[Answer]

    @property
    def takes_request(self) -> bool:
        return self.request is not NoRequest

    def parse_request(self, text: object) -> Request:
        """The request argument read as its message; MessageError if it is not one."""
        if type(text) is not str:
            raise MessageError(f"{self.name}() takes its request as JSON text")
        if self.request is str:
            return text  # type: ignore[return-value]
        return from_text(self.request, text)


HELLO: Final = Method("hello", NoRequest, AgentInfo)
HEARTBEAT: Final = Method("heartbeat", NoRequest, AgentTime)
CLOCK: Final = Method("clock", NoRequest, AgentTime)
STATUS: Final = Method("status", NoRequest, AgentStatus)
STOP: Final = Method("stop", NoRequest, Stopping)
TAKE_RUN_LOCK: Final = Method("take_run_lock", TakeRunLock, RunLockTaken)
PREPARE_LOAD: Final = Method("prepare_load", str, LoadProgress)
PREPARED: Final = Method("prepared", NoRequest, Prepared)
START_LOAD: Final = Method("start_load", StartLoad, LoadStarted)
LOAD_PROGRESS: Final = Method("load_progress", NoRequest, LoadProgress)
STOP_LOAD: Final = Method("stop_load", NoRequest, LoadStopped)
LOAD_REPORT: Final = Method("load_report", NoRequest, LoadReport)
DESCRIBE: Final = Method("describe", DescribeRequest, PlatformDescription)
BASELINE_TOOLS: Final = Method("baseline_tools", FindBaselineTools, BaselineTools)
START_NETSERVER: Final = Method("start_netserver", StartNetserver, NetserverStarted)
STOP_NETSERVER: Final = Method("stop_netserver", NoRequest, NetserverStopped)
START_NETPERF: Final = Method("start_netperf", RunNetperf, NetperfStarted)
NETPERF_RESULT: Final = Method("netperf_result", NoRequest, NetperfResult)
START_METRICS: Final = Method("start_metrics", MetricsPlan, MetricsStarted)
ALIGN_METRICS: Final = Method("align_metrics", StartLoad, MetricsStarted)
METRICS_REPORT: Final = Method("metrics_report", NoRequest, MetricsReport)
LATEST_METRICS: Final = Method("latest_metrics", NoRequest, LatestMetrics)

#: Every remote method, by name: what the service exposes, no more, no less.
METHODS: Final[dict[str, Method[Any, Any]]] = {
    method.name: method
    for method in (
        HELLO, HEARTBEAT, CLOCK, STATUS, STOP, TAKE_RUN_LOCK, PREPARE_LOAD, PREPARED,
        START_LOAD, LOAD_PROGRESS, STOP_LOAD, LOAD_REPORT, DESCRIBE, BASELINE_TOOLS,
        START_NETSERVER, STOP_NETSERVER, START_NETPERF, NETPERF_RESULT, START_METRICS,
        ALIGN_METRICS, METRICS_REPORT, LATEST_METRICS,
    )
}  # fmt: skip
