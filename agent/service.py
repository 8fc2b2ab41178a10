"""The agent's RPyC service: its whole remote API, and the walls around it.

A client that passed the token check (:mod:`agent.auth`) reaches exactly one object, the
:class:`AgentService` root, and through it the bound methods named in
:meth:`AgentService.exposed_names` — nothing else:

* attribute access on the root goes through :meth:`AgentService._rpyc_getattr`, an allowlist
  of ``exposed_`` methods (rpyc's own ``exposed_get_service_name`` & co. are not on it);
* every other ``getattr`` is refused by the protocol configuration (:data:`SERVER_CONFIG`:
  ``allow_getattr`` off, no safe attributes), so a method's ``__func__``, ``__globals__``,
  ``__class__``... stay out of reach;
* :class:`AgentConnection` answers only the request kinds a method call needs (no pickle, dir,
  setattr, iteration, comparisons...), calls only allowlisted methods, and accepts and returns
  plain immutable data only (str, bytes, int, float, bool, None, tuples of those): lists, dicts
  and objects would travel by reference, as netrefs. Requests and answers are JSON text of the
  typed messages :mod:`agent.api` declares (:mod:`agent.messages`).

Adding a method is declaring it in :mod:`agent.api` and adding its ``exposed_`` method to
:class:`AgentService`, which serves it with :meth:`AgentService._serve`. Every request on an
authenticated connection counts as a heartbeat.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import socket
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any, Final

import psutil
import rpyc
from rpyc.core import consts
from rpyc.core.protocol import Connection

import agent
from agent import api, protocol
from agent import platform as host_platform
from agent.baseline import Baseline
from agent.drivers.errors import KIND_STATE, DriverError
from agent.load import LoadController
from agent.messages import (
    KIND_REQUEST,
    AgentInfo,
    AgentStatus,
    AgentTime,
    LoadStarted,
    MessageError,
    NoRequest,
    RunLockTaken,
    StartLoad,
    Stopping,
    encode,
    encode_answer,
    encode_failure,
)
from agent.metrics.model import LatestMetrics, MetricsPlan, MetricsReport, MetricsStarted
from agent.metrics.sampler import MetricsSampler
from agent.processes import count_descendants
from agent.runlock import Holder, RunLock
from agent.watchdog import Liveness

log = logging.getLogger("agent.service")

EXPOSED_PREFIX: Final = "exposed_"

#: rpyc protocol configuration of the agent's side of every connection: deny by default, and a
#: KeyboardInterrupt in a request stays with the agent.
SERVER_CONFIG: Final[dict[str, object]] = {
    **protocol.DENY_BY_DEFAULT,
    "propagate_KeyboardInterrupt_locally": False,
}

#: The request kinds a client needs to call a method; everything else is refused.
ALLOWED_REQUESTS: Final = frozenset(
    {
        consts.HANDLE_PING,
        consts.HANDLE_CLOSE,
        consts.HANDLE_GETROOT,
        consts.HANDLE_GETATTR,
        consts.HANDLE_CALL,
        consts.HANDLE_CALLATTR,
        consts.HANDLE_DEL,
        consts.HANDLE_INSPECT,
        consts.HANDLE_REPR,
        consts.HANDLE_STR,
        consts.HANDLE_HASH,
    }
)

_PLAIN_TYPES: Final = frozenset({str, bytes, int, float, bool, type(None)})


def is_plain(value: object) -> bool:
    """Plain immutable data, passed by value: exact builtin scalar types, or tuples of them."""
    if type(value) is tuple:
        return all(is_plain(item) for item in value)
    return type(value) in _PLAIN_TYPES


def _is_keyword_pair(pair: object) -> bool:
    return type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str and is_plain(pair[1])


def _refuser(handler: int) -> Callable[..., object]:
    def refuse(_conn: object, *_args: object) -> object:
        log.warning("refused a request of kind %d", handler)
        raise PermissionError(f"request kind {handler} is not served by the coord agent")

    return refuse


class AgentConnection(Connection):  # type: ignore[misc]  # rpyc ships no type hints
    """rpyc's Connection, narrowed to what the agent's API needs."""

    @classmethod
    def _request_handlers(cls) -> dict[int, Callable[..., object]]:
        handlers: dict[int, Callable[..., object]] = super()._request_handlers()
        return {
            kind: handler if kind in ALLOWED_REQUESTS else _refuser(kind)
            for kind, handler in handlers.items()
        }

    def _dispatch_request(self, seq: int, raw_args: object) -> None:
        root = self._local_root
        if isinstance(root, AgentService):
            root.request_started()
        super()._dispatch_request(seq, raw_args)  # the reply is sent when this returns
        if isinstance(root, AgentService):
            root.request_answered()

    def _handle_call(self, obj: object, args: object, kwargs: object = ()) -> object:
        root = self._local_root
        if not (
            isinstance(root, AgentService)
            and isinstance(obj, types.MethodType)
            and obj.__self__ is root
            and obj.__name__.startswith(EXPOSED_PREFIX)
            and obj.__name__[len(EXPOSED_PREFIX) :] in root.exposed_names()
        ):
            raise PermissionError("only the agent service's exposed methods can be called")
        if not (
            type(args) is tuple
            and type(kwargs) is tuple
            and is_plain(args)
            and all(_is_keyword_pair(pair) for pair in kwargs)
        ):
            raise TypeError("agent methods take plain data only (str, bytes, numbers, tuples)")
        try:
            result = obj(*args, **dict(kwargs))
        except Exception:
            log.exception("%s() failed", obj.__name__[len(EXPOSED_PREFIX) :])
            raise  # rpyc sends type and message to the client
        if not is_plain(result):
            raise TypeError(
                f"{obj.__name__} returned {type(result).__name__}, not plain data (a bug)"
            )
        return result

    def _handle_inspect(self, id_pack: object) -> tuple[tuple[str, str], ...]:
        """Describe the root by its exposed names only; any other object by nothing."""
        obj = self._local_objects[id_pack]
        if isinstance(obj, AgentService):
            return tuple(
                (name, getattr(obj, EXPOSED_PREFIX + name).__doc__ or "")
                for name in sorted(obj.exposed_names())
            )
        return ()


def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


_EXPOSED_NAMES: dict[type, frozenset[str]] = {}


def _exposed_names(cls: type) -> frozenset[str]:
    cached = _EXPOSED_NAMES.get(cls)
    if cached is not None:
        return cached
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is rpyc.Service:
            break  # rpyc's own exposed_get_service_* are not part of the agent's API
        names.update(
            name[len(EXPOSED_PREFIX) :]
            for name, value in vars(klass).items()
            if name.startswith(EXPOSED_PREFIX) and callable(value)
        )
    _EXPOSED_NAMES[cls] = frozenset(names)
    return _EXPOSED_NAMES[cls]


class AgentService(rpyc.Service):  # type: ignore[misc]  # rpyc ships no type hints
    """The agent's API. Every ``exposed_`` method takes and returns plain data only."""

    ALIASES = ("COORD_AGENT",)
    _protocol = AgentConnection

    def __init__(
        self,
        liveness: Liveness,
        *,
        watchdog: float,
        bundle_hash: str | None,
    ) -> None:
        self._liveness = liveness
        self._watchdog = watchdog
        self._bundle_hash = bundle_hash
        self._started_ns = time.time_ns()
        self._started_mono = time.monotonic()
        self._stop_requested = False
        self._process = psutil.Process()
        self._connections: set[Connection] = set()
        self._connections_lock = threading.Lock()
        self._load = LoadController()
        self._baseline = Baseline()
        self._run_lock = RunLock()
        self._sampler: MetricsSampler | None = None
        self._sampler_lock = threading.Lock()

    # --- what rpyc and AgentConnection call -------------------------------------------------

    @classmethod
    def exposed_names(cls) -> frozenset[str]:
        """The method names a client may call (without the ``exposed_`` prefix)."""
        return _exposed_names(cls)

    def _rpyc_getattr(self, name: str) -> Any:
        if name in self.exposed_names():
            return getattr(self, EXPOSED_PREFIX + name)
        log.warning("refused access to %r", name)
        raise AttributeError(f"the coord agent has no method {name!r}")

    def _rpyc_setattr(self, name: str, _value: object) -> None:
        raise AttributeError(f"cannot set {name!r} on the coord agent")

    def _rpyc_delattr(self, name: str) -> None:
        raise AttributeError(f"cannot delete {name!r} on the coord agent")

    def __repr__(self) -> str:
        return "<coord agent service>"

    def on_connect(self, conn: Connection) -> None:
        with self._connections_lock:
            self._connections.add(conn)
        log.info("connection opened: %s", conn._config.get("endpoints"))

    def on_disconnect(self, conn: Connection) -> None:
        with self._connections_lock:
            self._connections.discard(conn)
        log.info("connection closed: %s", conn._config.get("endpoints"))

    def close_connections(self, timeout: float) -> None:
        """Close every open connection before the server closes their sockets, within
        ``timeout`` seconds.

        A connection marked closed first ends its serving thread quietly; a socket pulled from
        under a serving thread would be logged by rpyc as an abrupt termination, with a
        traceback, on every ordinary shutdown. rpyc's close waits for the peer to acknowledge
        it: a coordinator behind a cut link never does, so each close gets ``timeout`` seconds
        for that reply, and all of them run at once in threads joined against one deadline
        (a close stuck in a send is released when the server shuts the sockets down).
        """
        with self._connections_lock:
            connections = list(self._connections)
        closers = []
        for conn in connections:
            conn._config["sync_request_timeout"] = timeout
            closer = threading.Thread(target=_close_quietly, args=(conn,),
                                      name="close-connection", daemon=True)
            closer.start()
            closers.append(closer)
        deadline = time.monotonic() + timeout
        for closer in closers:
            closer.join(max(0.0, deadline - time.monotonic()))

    def request_started(self) -> None:
        self._liveness.touch()

    def request_answered(self) -> None:
        if self._stop_requested:
            self._liveness.request_shutdown("stop() requested by the coordinator")

    # --- the API ----------------------------------------------------------------------------

    def _serve(
        self, method: api.Method[Any, Any], handler: Callable[[Any], object], request: object = None
    ) -> str:
        """Read ``request`` as ``method``'s request message, answer with ``handler``'s message.

        A request that is not its message, and a driver's refusal, are answered as data (a
        :class:`~agent.messages.Failure`: kind and message); anything else is a bug and
        propagates (logged, then sent by rpyc as an exception).
        """
        try:
            parsed = method.parse_request(request) if method.takes_request else NoRequest()
        except MessageError as exc:
            return encode_failure(KIND_REQUEST, f"{method.name}(): {exc}")
        try:
            answer = handler(parsed)
        except DriverError as exc:
            return encode_failure(exc.kind, exc.message)
        if not isinstance(answer, method.answer):
            raise TypeError(f"{method.name}() made a {type(answer).__name__} (a bug)")
        return encode_answer(answer)

    # Every method answers JSON text: ``{"answer": MESSAGE}`` with the message :mod:`agent.api`
    # declares for it, or ``{"error": {"kind": ..., "message": ...}}``.

    def exposed_hello(self) -> str:
        """Who this agent is (versions, interpreter, platform, pid, start, bundle)."""
        return self._serve(api.HELLO, lambda _: self._info())

    def _info(self) -> AgentInfo:
        return AgentInfo(
            agent_version=agent.__version__,
            rpyc_version=rpyc.__version__,
            python=platform.python_version(),
            implementation=sys.implementation.name,
            platform=platform.platform(),
            machine=platform.machine(),
            hostname=socket.gethostname(),
            pid=os.getpid(),
            start_time_ns=self._started_ns,
            bundle_hash=self._bundle_hash,
        )

    def exposed_heartbeat(self) -> str:
        """Keep the watchdog quiet (any call does); the agent's ``time.time_ns()``."""
        self._liveness.heartbeat()
        return self._serve(api.HEARTBEAT, lambda _: AgentTime(time.time_ns()))

    def exposed_clock(self) -> str:
        """The agent's wall clock, ``time.time_ns()``, for offset estimation."""
        return self._serve(api.CLOCK, lambda _: AgentTime(time.time_ns()))

    def exposed_status(self) -> str:
        """Uptime, resource use of the agent process itself, children, heartbeat age."""
        return self._serve(api.STATUS, lambda _: self._status())

    def _status(self) -> AgentStatus:
        with self._process.oneshot():
            cpu = self._process.cpu_times()
            rss = self._process.memory_info().rss
        return AgentStatus(
            uptime_s=time.monotonic() - self._started_mono,
            pid=os.getpid(),
            rss_bytes=rss,
            cpu_s=cpu.user + cpu.system,
            children=count_descendants(),
            heartbeat_age_s=self._liveness.heartbeat_age(),
            request_age_s=self._liveness.previous_request_age(),
            watchdog_s=self._watchdog,
        )

    def exposed_stop(self) -> str:
        """Stop the agent and its processes once this call is answered."""
        self._stop_requested = True
        return self._serve(api.STOP, lambda _: Stopping())

    # --- load (agent.load, agent.drivers) ---------------------------------------------------
    #
    # A driver's failure (``agent.drivers.errors.DriverError``) is answered as a Failure: its
    # kind (``config``, ``unreachable``, ``auth``, ``server``, ``state``, ``worker``, ``busy``)
    # and one-line message.

    def exposed_take_run_lock(self, request: str) -> str:
        """Take the host's run lock (:mod:`agent.runlock`) for the run the request's holder
        describes, held until this agent exits. ``forced_over`` is null once held; when another
        process holds it, Failure ``busy`` naming it, or with ``force`` the run goes on without
        the lock: ``forced_over`` says who held it."""
        return self._serve(api.TAKE_RUN_LOCK, self._take_run_lock, request)

    def _take_run_lock(self, request: api.TakeRunLock) -> RunLockTaken:
        holder = Holder.from_json(encode(request.holder))  # one line, bounded lengths
        if holder is None:
            raise TypeError("a holder the strict reader accepted was refused (a bug)")
        return RunLockTaken(self._run_lock.take(holder, force=request.force))

    def exposed_prepare_load(self, spec_json: str) -> str:
        """Start preparing a load from its spec (JSON text) and answer at once: progress in
        state ``preparing``. Poll ``load_progress`` until ``prepared`` or ``failed``, then ask
        ``prepared`` for the outcome.

        The preparation (load processes connected, the keyspace preloaded if asked) runs in a
        thread of its own, so this connection's heartbeats are answered meanwhile and the
        watchdog sees them. Fails at once (``config``, ``state``) for a spec it cannot use.
        """
        return self._serve(api.PREPARE_LOAD, self._load.begin_prepare, spec_json)

    def exposed_prepared(self) -> str:
        """What the prepared load will run with (``agent.messages.Prepared``: driver and
        version, processes, connections, pipeline, interpreter), or the preparation's failure
        (``unreachable``, ``auth``, ``server``, ``worker``, ``memory``...)."""
        return self._serve(api.PREPARED, lambda _: self._load.prepared())

    def exposed_start_load(self, request: str) -> str:
        """Start the prepared load at ``t0_ns`` (this host's ``time.time_ns()``); returns at
        once with the start instant accepted. A sampling started aligns on it too."""
        return self._serve(api.START_LOAD, self._start_load, request)

    def _start_load(self, start: StartLoad) -> LoadStarted:
        started = self._load.start(start.t0_ns)
        with self._sampler_lock:
            sampler = self._sampler
        if sampler is not None:  # no second call: the sampler knows T0 as early as the load
            sampler.align(start.t0_ns)
        return started

    def exposed_load_progress(self) -> str:
        """Cheap: state, the last interval finished (its phase, rate and p99 over all
        commands), errors so far, why a load failed."""
        return self._serve(api.LOAD_PROGRESS, lambda _: self._load.progress())

    def exposed_stop_load(self) -> str:
        """Stop the load now if one is prepared or running; the state after."""
        return self._serve(api.STOP_LOAD, lambda _: self._load.stop())

    def exposed_load_report(self) -> str:
        """The finished or stopped load's report (``agent.drivers.intervals.LoadReport``)."""
        return self._serve(api.LOAD_REPORT, lambda _: self._load.report())

    # --- the platform description (agent.platform) -----------------------------------------

    def exposed_describe(self, request: str) -> str:
        """This host's platform description (CPU, memory, kernel, OS, virtualization, CPU
        quota, interfaces, tools), and the request's server's (``INFO server``, performance
        settings) when it names one. Never fails: what cannot be read is unknown, with why."""
        return self._serve(
            api.DESCRIBE, lambda asked: host_platform.describe(asked.server), request
        )

    # --- the netperf baseline (agent.baseline) ----------------------------------------------

    def exposed_baseline_tools(self, request: str) -> str:
        """Where netperf and netserver are on this host (null: not found)."""
        return self._serve(api.BASELINE_TOOLS, Baseline.tools, request)

    def exposed_start_netserver(self, request: str) -> str:
        """Start netserver on the request's address and port; answered once it listens."""
        return self._serve(api.START_NETSERVER, self._baseline.start_server, request)

    def exposed_stop_netserver(self) -> str:
        """Stop this agent's netserver (and the tests it forked); idempotent."""
        return self._serve(api.STOP_NETSERVER, lambda _: self._baseline.stop_server())

    def exposed_start_netperf(self, request: str) -> str:
        """Start one netperf run; answered at once. Poll ``netperf_result`` until done."""
        return self._serve(api.START_NETPERF, self._baseline.start_netperf, request)

    def exposed_netperf_result(self) -> str:
        """The current netperf run: still going, or its exit status and output."""
        return self._serve(api.NETPERF_RESULT, lambda _: self._baseline.netperf_result())

    # --- metrics (agent.metrics) ------------------------------------------------------------

    def exposed_start_metrics(self, request: str) -> str:
        """Start sampling this host (``agent.metrics.model.MetricsPlan``): a baseline now, then
        every boundary of the load's grid once aligned. Replaces a sampling not collected."""
        return self._serve(api.START_METRICS, self._start_metrics, request)

    def _start_metrics(self, plan: MetricsPlan) -> MetricsStarted:
        sampler = MetricsSampler(plan)
        with self._sampler_lock:
            previous, self._sampler = self._sampler, sampler
        if previous is not None:
            previous.finish()
        sampler.start()
        return MetricsStarted()

    def exposed_align_metrics(self, request: str) -> str:
        """Sample on the grid of the load's T0 (``t0_ns``: this host's ``time.time_ns()``), on
        a host without load (``start_load`` aligns a client's sampling itself)."""
        return self._serve(api.ALIGN_METRICS, self._align_metrics, request)

    def _align_metrics(self, start: StartLoad) -> MetricsStarted:
        self._current_sampler("align").align(start.t0_ns)
        return MetricsStarted(start.t0_ns)

    def exposed_metrics_report(self) -> str:
        """Stop sampling; every interval sampled and Redis INFO
        (``agent.metrics.model.MetricsReport``)."""
        return self._serve(api.METRICS_REPORT, lambda _: self._metrics_report())

    def exposed_latest_metrics(self) -> str:
        """The last interval sampled so far (``agent.metrics.model.LatestMetrics``), for the
        live view: cheap, and sampling goes on; none when not sampling."""
        return self._serve(api.LATEST_METRICS, lambda _: self._latest_metrics())

    def _latest_metrics(self) -> LatestMetrics:
        with self._sampler_lock:
            sampler = self._sampler
        return LatestMetrics(None if sampler is None else sampler.latest())

    def _metrics_report(self) -> MetricsReport:
        sampler = self._current_sampler("report")
        with self._sampler_lock:
            if self._sampler is sampler:
                self._sampler = None
        return sampler.finish()

    def _current_sampler(self, what: str) -> MetricsSampler:
        with self._sampler_lock:
            sampler = self._sampler
        if sampler is None:
            raise DriverError(KIND_STATE, f"cannot {what} metrics: sampling was not started")
        return sampler
