"""Typed messages on the wire, and the one strict reader that turns JSON back into them.

Every remote method of the agent takes and answers frozen dataclasses declared in the agent's
shared protocol layer (here, and the load report in :mod:`agent.drivers.intervals`); the
method table is :mod:`agent.api`. Both sides use the same definitions: the agent encodes with
:func:`encode`, the coordinator decodes with :func:`decode`, which refuses an unknown, missing
or mistyped field with a one-line :class:`MessageError` naming its path
(``intervals.1.requests: expected an integer, got '12'``). A dataclass may check more in
``__post_init__`` (a ``ValueError`` there is reported at the message's path).

Types a message field may have: ``int``, ``float``, ``str``, ``bool``, ``None``, a ``str``
:class:`enum.Enum`, another message, ``X | None``, ``tuple[X, ...]`` and ``Mapping[str, X]``
(or ``dict[str, X]``). An ``int`` is never a ``bool``; a ``float`` accepts an integer.

Answers travel in an envelope (:func:`encode_answer`, :func:`encode_failure`): either
``{"answer": MESSAGE}`` or ``{"error": {"kind": KIND, "message": ONE_LINE}}``, so a driver's
refusal crosses as data, never as an exception recognised by its type's name.

Pure: standard library only, no I/O, so the agent's bundle and the coordinator both import it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar, Union

T = TypeVar("T")

_SHOWN: Final = 60


class MessageError(ValueError):
    """A message that does not match its declaration: one line, naming the field's path."""


# --- the reader and the writer ---------------------------------------------------------------


def encode(message: object) -> Any:
    """A message as JSON-compatible data (mappings sorted by key, enums by value)."""
    if dataclasses.is_dataclass(message) and not isinstance(message, type):
        return {
            item.name: encode(getattr(message, item.name)) for item in dataclasses.fields(message)
        }
    if isinstance(message, enum.Enum):
        return message.value
    if isinstance(message, tuple):
        return [encode(item) for item in message]
    if isinstance(message, Mapping):
        return {key: encode(value) for key, value in sorted(message.items())}
    return message


def to_text(message: object) -> str:
    return json.dumps(encode(message))


def decode(cls: type[T], data: object, path: str = "") -> T:
    """``data`` (parsed JSON) read as a ``cls``; :class:`MessageError` on any difference."""
    return typing.cast(T, _read(cls, data, path))


def from_text(cls: type[T], text: str | bytes) -> T:
    """JSON text read as a ``cls`` (see :func:`decode`)."""
    return decode(cls, parse_json(text))


def parse_json(text: str | bytes) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise MessageError(f"not JSON ({str(exc) or type(exc).__name__})") from None


def _read(kind: Any, data: object, path: str) -> object:
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        return _read_union(typing.get_args(kind), data, path)
    if origin is tuple:
        item_kind = typing.get_args(kind)[0]
        items = _expect(data, list, "a list", path)
        return tuple(_read(item_kind, item, _at(path, str(n))) for n, item in enumerate(items))
    if origin in (dict, Mapping):
        value_kind = typing.get_args(kind)[1]
        fields = _expect(data, dict, "an object", path)
        return {key: _read(value_kind, value, _at(path, key)) for key, value in fields.items()}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _read_message(kind, data, path)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return _read_enum(kind, data, path)
    return _read_scalar(kind, data, path)


def _read_union(options: tuple[Any, ...], data: object, path: str) -> object:
    if data is None and type(None) in options:
        return None
    others = [option for option in options if option is not type(None)]
    if len(others) != 1:
        raise TypeError(f"unsupported message field type at {path or '(message)'}: {options}")
    return _read(others[0], data, path)


def _read_message(cls: type, data: object, path: str) -> object:
    fields = _expect(data, dict, "an object", path)
    hints = _hints(cls)
    names = [item.name for item in dataclasses.fields(cls) if item.init]
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise MessageError(f"{_at(path, unknown[0])}: unknown field")
    values = {}
    for name in names:
        if name not in fields:
            raise MessageError(f"{_at(path, name)}: missing")
        values[name] = _read(hints[name], fields[name], _at(path, name))
    try:
        return cls(**values)
    except ValueError as exc:
        raise MessageError(f"{path or '(message)'}: {exc}") from None


def _read_enum(cls: type[enum.Enum], data: object, path: str) -> object:
    try:
        return cls(data)
    except ValueError:
        known = ", ".join(str(member.value) for member in cls)
        raise MessageError(f"{path}: expected one of {known}, got {_shown(data)}") from None


_SCALARS: Final[dict[object, tuple[tuple[type, ...], str]]] = {
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "a string"),
    bool: ((bool,), "true or false"),
    type(None): ((type(None),), "null"),
}


def _read_scalar(kind: object, data: object, path: str) -> object:
    if kind not in _SCALARS:
        raise TypeError(f"unsupported message field type at {path or '(message)'}: {kind!r}")
    accepted, described = _SCALARS[kind]
    if type(data) not in accepted:  # exact types: True is not an integer
        raise MessageError(f"{path or '(message)'}: expected {described}, got {_shown(data)}")
    return float(data) if kind is float else data  # type: ignore[arg-type]


def _expect(data: object, kind: type[T], described: str, path: str) -> T:
    if type(data) is not kind:
        raise MessageError(f"{path or '(message)'}: expected {described}, got {_shown(data)}")
    return data


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


# --- the answer envelope ---------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A refusal that crosses the wire as data: a ``kind`` (see ``agent.drivers.errors``) and
    a one-line ``message`` for the user."""

    kind: str
    message: str


#: The kind of a :class:`Failure` for a request that does not match its declaration.
KIND_REQUEST: Final = "request"


def encode_answer(message: object) -> str:
    return json.dumps({"answer": encode(message)})


def encode_failure(kind: str, message: str) -> str:
    return json.dumps({"error": encode(Failure(kind, " ".join(message.split())))})


def decode_reply(cls: type[T], text: str | bytes) -> T | Failure:
    """An envelope's answer read as a ``cls``, or the :class:`Failure` it carries."""
    envelope = parse_json(text)
    if type(envelope) is not dict or len(envelope) != 1:
        raise MessageError('expected {"answer": ...} or {"error": ...}')
    if "error" in envelope:
        return decode(Failure, envelope["error"], "error")
    if "answer" not in envelope:
        raise MessageError(f"{next(iter(envelope))}: unknown field")
    return decode(cls, envelope["answer"])


# --- the messages ----------------------------------------------------------------------------


class LoadState(str, enum.Enum):
    """Where a load is in its life (see :mod:`agent.load`)."""

    IDLE = "idle"
    PREPARING = "preparing"
    PREPARED = "prepared"
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def done(self) -> bool:
        """The load is over: a report can be asked for."""
        return self in (LoadState.FINISHED, LoadState.STOPPED, LoadState.FAILED)


@dataclass(frozen=True)
class NoRequest:
    """The request of a method that takes nothing."""


@dataclass(frozen=True)
class AgentInfo:
    """``hello()``: who the agent is."""

    agent_version: str
    rpyc_version: str
    python: str
    implementation: str
    platform: str
    machine: str
    hostname: str
    pid: int
    start_time_ns: int
    bundle_hash: str | None


@dataclass(frozen=True)
class AgentTime:
    """``heartbeat()`` and ``clock()``: the agent's wall clock, ``time.time_ns()``."""

    time_ns: int


@dataclass(frozen=True)
class AgentStatus:
    """``status()``: how the agent is doing. ``heartbeat_age_s`` counts from the last
    ``heartbeat()`` (None before the first); ``request_age_s`` from the last request before
    this one (what the watchdog saw)."""

    uptime_s: float
    pid: int
    rss_bytes: int
    cpu_s: float
    children: int
    heartbeat_age_s: float | None
    request_age_s: float
    watchdog_s: float


@dataclass(frozen=True)
class Stopping:
    """``stop()``: the agent stops once this answer is sent."""

    stopping: bool = True


@dataclass(frozen=True)
class RunLockTaken:
    """``take_run_lock()``: held; ``forced_over`` names who held it when ``force`` went on
    without the lock (None when this run holds it)."""

    forced_over: str | None


@dataclass(frozen=True)
class Prepared:
    """``prepare_load()``: what the load will run with, as the client will actually run it: the
    load processes and connections (over all of them), the driver and its version, requests in
    flight per connection (None: the driver does not pipeline), and the interpreter of the load
    processes (an external tool's driver names the tool here). The coordinator records it per
    agent in results.json, the same for every driver."""

    processes: int
    connections: int
    driver: str = ""
    driver_version: str = ""
    pipeline: int | None = None
    interpreter: str = ""
    preload_seconds: float | None = None
    """The keyspace preload's wall time on this host, s (its slowest load process); None: no
    preload."""


@dataclass(frozen=True)
class StartLoad:
    """``start_load()``'s request: the start instant in the agent's clock."""

    t0_ns: int


@dataclass(frozen=True)
class LoadStarted:
    """``start_load()``: the start instant the agent accepted."""

    t0_ns: int


@dataclass(frozen=True)
class LoadProgress:
    """``load_progress()``: a live snapshot. ``interval``: the last interval every load
    process finished (None before the first); ``ops_per_sec`` and ``p99_usec`` are that
    interval's, over all commands; ``errors`` counts every error so far; ``problem`` says why
    a load failed."""

    state: LoadState
    interval: int | None = None
    phase: str | None = None
    ops_per_sec: float | None = None
    p99_usec: float | None = None
    errors: int = 0
    problem: str | None = None
    preload_done: int | None = None
    """While preparing with a preload: keys SET so far, over every load process."""
    preload_total: int | None = None
    """While preparing with a preload: keys to SET, over every load process."""


@dataclass(frozen=True)
class LoadStopped:
    """``stop_load()``: the state the load is in afterwards."""

    state: LoadState


@dataclass(frozen=True)
class ReadyInfo:
    """The agent's ready line (:func:`agent.protocol.encode_ready`, without its ``event``):
    where it listens (on the host's 127.0.0.1) and what it runs."""

    port: int
    pid: int
    agent_version: str
    python: str
    rpyc_version: str


# --- the platform description (agent.platform) -----------------------------------------------
#
# A value that could not be read is None, and its field's name is a key of ``unknown`` whose
# value says why; None without an ``unknown`` entry means there is none (no CPU quota, say).


@dataclass(frozen=True)
class ToolVersion:
    """A tool a run may use, and its version line; ``reason`` says why it is unknown."""

    name: str
    version: str | None
    reason: str | None = None


@dataclass(frozen=True)
class NetInterface:
    """One network interface: speed (Mb/s), MTU, driver, and the offloads ``ethtool -k``
    reports (on/off)."""

    name: str
    speed_mbps: int | None
    mtu: int | None
    driver: str | None
    offloads: Mapping[str, bool] | None
    unknown: Mapping[str, str]


@dataclass(frozen=True)
class HostPlatform:
    """What a host is: processors, memory, kernel and OS, virtualization, CPU quota of the
    agent's cgroup (in cores), clock source, Python, tools and interfaces, and how its idle
    CPUs sleep (which sets how long a request to an idle host waits for a CPU to wake)."""

    hostname: str
    cpu_model: str | None
    sockets: int | None
    cores: int | None
    threads: int | None
    numa_nodes: int | None
    governor: str | None
    boost: str | None
    memory_bytes: int | None
    kernel: str
    os_release: str | None
    virtualization: str | None
    dmi_vendor: str | None
    dmi_product: str | None
    cpu_quota_cores: float | None
    cpu_cgroup: str | None
    clock_source: str | None
    python: str
    tools: tuple[ToolVersion, ...]
    interfaces: tuple[NetInterface, ...]
    unknown: Mapping[str, str]
    cpu_idle: str | None = None
    """The cpuidle driver, its governor and the idle states cpu0 may enter."""
    halt_poll_ns: int | None = None
    """A KVM guest's halt polling (haltpoll's ``guest_halt_poll_ns``): how long an idle vCPU
    polls before it halts."""


@dataclass(frozen=True)
class ServerProbe:
    """A target server the agent is asked to describe, reached as the load reaches it."""

    address: str
    port: int
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    source_address: str | None = None


@dataclass(frozen=True)
class ServerPlatform:
    """A target server: its ``INFO server`` (less the fields that change as it runs) and the
    ``CONFIG GET`` values that change performance."""

    endpoint: str
    info: Mapping[str, str]
    config: Mapping[str, str]
    unknown: Mapping[str, str]


@dataclass(frozen=True)
class DescribeRequest:
    """``describe()``'s request: the server to describe too, if any."""

    server: ServerProbe | None = None


@dataclass(frozen=True)
class PlatformDescription:
    """``describe()``: the agent's host, and the server it was asked about."""

    host: HostPlatform
    server: ServerPlatform | None


# --- the netperf baseline (agent.baseline) ---------------------------------------------------


@dataclass(frozen=True)
class FindBaselineTools:
    """``baseline_tools()``'s request: the PATH to search (None: the agent's own)."""

    search_path: str | None = None


@dataclass(frozen=True)
class BaselineTools:
    """``baseline_tools()``: where ``netperf`` and ``netserver`` are (None: not found)."""

    netperf: str | None
    netserver: str | None


@dataclass(frozen=True)
class StartNetserver:
    """``start_netserver()``'s request: the address and control port it binds to."""

    address: str
    port: int
    search_path: str | None = None


@dataclass(frozen=True)
class NetserverStarted:
    """``start_netserver()``: it accepts connections."""

    pid: int


@dataclass(frozen=True)
class NetserverStopped:
    """``stop_netserver()``: whether one was still running."""

    was_running: bool


@dataclass(frozen=True)
class RunNetperf:
    """``start_netperf()``'s request: one netperf run (``TCP_RR`` or ``TCP_STREAM``) towards
    ``host``'s netserver on ``port``, for ``duration_s`` seconds, leaving from
    ``local_address`` when set."""

    test: str
    host: str
    port: int
    duration_s: int
    request_size: int = 1
    response_size: int = 1
    local_address: str | None = None
    search_path: str | None = None


@dataclass(frozen=True)
class NetperfStarted:
    """``start_netperf()``: the run's process."""

    pid: int


@dataclass(frozen=True)
class NetperfResult:
    """``netperf_result()``: ``done`` once the run ended, with its exit status and what it
    printed (read by ``coordinator.core.netperf``); ``timed_out`` when the agent killed it."""

    done: bool
    exit_status: int | None
    output: str
    timed_out: bool
