"""The builtin driver's ``params``: their limits, declared once, their parsing and the plan of
load processes they give. Pure (no I/O).

The limits here are the only ones: the agent refuses a spec beyond them, and the inventory's
``benchmark.builtin`` model (``coordinator/inventory/schema.py``) imports them for its fields,
so an inventory that validates is a spec the agent accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from agent.drivers.errors import KIND_CONFIG, DriverError
from agent.drivers.keyspace import UNIFORM, Distribution, distribution_problem
from agent.drivers.memory import LoadShape
from agent.drivers.schedule import ARRIVALS, CONSTANT
from agent.drivers.spec import Fields
from agent.drivers.templates import (
    CommandTemplate,
    TemplateError,
    parse_preload_command,
    parse_templates,
    request_size_estimate,
)

Number = TypeVar("Number", int, float)


@dataclass(frozen=True)
class Limit(Generic[Number]):
    """Inclusive bounds of one numeric parameter."""

    minimum: Number
    maximum: Number


PROCESSES: Final = Limit(1, 1024)
"""Load processes per client host (null: the host's usable cores)."""
CONNECTIONS: Final = Limit(1, 100_000)
"""Connections per client host, over all its load processes."""
PIPELINE: Final = Limit(1, 10_000)
"""Requests per batch on one connection."""
SET_RATIO: Final = Limit(0.0, 1.0)
"""Share of SET requests."""
KEYSPACE: Final = Limit(1, 10**10)
"""Distinct keys."""
VALUE_SIZE: Final = Limit(0, 512 * 1024 * 1024)
"""Bytes per SET value (Redis's own limit on a string)."""
RATE: Final = Limit(0.001, 1e9)
"""Open loop: target requests/s per client host."""
REPLY_TIMEOUT_S: Final = Limit(0.001, 600.0)
"""Seconds a connection with requests in flight may go without a reply before they count as
``timeout`` errors and the connection is replaced."""
DEFAULT_REPLY_TIMEOUT_S: Final = 10.0
BUSY_POLL_S: Final = Limit(0.0, 0.01)
"""Closed loop: seconds a load process polls its connections without sleeping, when none has
a reply ready, before it sleeps in ``epoll_wait`` (0: it sleeps at once)."""


@dataclass(frozen=True)
class BuiltinParams:
    processes: int | None
    connections: int
    pipeline: int
    set_ratio: float
    keyspace: int
    value_size: int
    preload: bool
    seed: int | None = None
    rate: float | None = None  # open loop; None: closed loop
    arrivals: str = CONSTANT  # the open loop's schedule: constant or poisson
    templates: tuple[dict[str, Any], ...] | None = None
    """Command templates as given (checked by :func:`agent.drivers.templates.parse_templates`);
    None: the SET/GET mix of ``set_ratio``."""
    setup: tuple[tuple[str, ...], ...] = ()
    key_prefix: str = "key:"
    distribution: Distribution = UNIFORM
    reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S
    busy_poll_s: float = 0.0
    preload_command: tuple[str, ...] | None = None
    """The preload's command for each key (checked by
    :func:`agent.drivers.templates.parse_preload_command`); None: ``SET {key} {value}``."""


def open_loop_fields(fields: Fields) -> tuple[float | None, str]:
    """``rate`` (None: a closed loop) and ``arrivals`` of a driver's params, checked: the
    builtin and the http drivers take the open loop alike."""
    rate = None
    if fields.get("rate") is not None:
        rate = fields.number("rate", RATE.minimum, RATE.maximum)
    arrivals = CONSTANT
    if fields.has("arrivals"):
        arrivals = fields.text("arrivals")
        if arrivals not in ARRIVALS:
            raise fields.problem("arrivals", f"must be one of {', '.join(ARRIVALS)}, got "
                                 f"{arrivals!r}")
    return rate, arrivals


def parse_params(params: dict[str, Any]) -> BuiltinParams:
    """The builtin driver's ``params``; DriverError("config", ...) for anything wrong."""
    fields = Fields(params, "spec.params")
    processes = None
    if fields.get("processes") is not None:
        processes = fields.integer("processes", PROCESSES.minimum, PROCESSES.maximum)
    seed = fields.optional_integer("seed", minimum=0) if fields.has("seed") else None
    rate, arrivals = open_loop_fields(fields)
    reply_timeout_s = DEFAULT_REPLY_TIMEOUT_S
    if fields.has("timeout") and fields.get("timeout") is not None:
        reply_timeout_s = fields.number("timeout", REPLY_TIMEOUT_S.minimum,
                                  REPLY_TIMEOUT_S.maximum)
    busy_poll_s = 0.0
    if fields.has("busy_poll") and fields.get("busy_poll") is not None:
        busy_poll_s = fields.number("busy_poll", BUSY_POLL_S.minimum, BUSY_POLL_S.maximum)
        if busy_poll_s and rate is not None:
            raise fields.problem("busy_poll", "applies to the closed loop only, not with rate")
    parsed = BuiltinParams(
        processes=processes,
        connections=fields.integer("connections", CONNECTIONS.minimum, CONNECTIONS.maximum),
        pipeline=fields.integer("pipeline", PIPELINE.minimum, PIPELINE.maximum),
        set_ratio=fields.number("set_ratio", SET_RATIO.minimum, SET_RATIO.maximum),
        keyspace=fields.integer("keyspace", KEYSPACE.minimum, KEYSPACE.maximum),
        value_size=fields.integer("value_size", VALUE_SIZE.minimum, VALUE_SIZE.maximum),
        preload=fields.boolean("preload"),
        seed=seed,
        rate=rate,
        arrivals=arrivals,
        reply_timeout_s=reply_timeout_s,
        busy_poll_s=busy_poll_s,
        **_templates_and_keys(fields),
    )
    fields.no_more()
    return parsed


def _templates_and_keys(fields: Fields) -> dict[str, Any]:
    """The optional fields of templates and keyspace, checked as the worker will use them."""
    found: dict[str, Any] = {}
    if fields.has("templates") and fields.get("templates") is not None:
        try:
            parse_templates(fields.get("templates"), "spec.params.templates")
        except TemplateError as exc:
            raise DriverError(KIND_CONFIG, str(exc)) from None
        found["templates"] = tuple(fields.get("templates"))
    if fields.has("preload_command") and fields.get("preload_command") is not None:
        try:
            found["preload_command"] = parse_preload_command(
                fields.get("preload_command"), "spec.params.preload_command")
        except TemplateError as exc:
            raise DriverError(KIND_CONFIG, str(exc)) from None
    if fields.has("setup") and fields.get("setup"):
        setup = fields.get("setup")
        if not isinstance(setup, list) or not all(
            isinstance(words, list) and words and all(isinstance(w, str | int) for w in words)
            for words in setup
        ):
            raise fields.problem("setup", "must be a list of commands (lists of words)")
        found["setup"] = tuple(tuple(str(w) for w in words) for words in setup)
    if fields.has("key_prefix"):
        found["key_prefix"] = fields.optional_text("key_prefix") or ""
    if fields.has("distribution") and fields.get("distribution") is not None:
        data = fields.object("distribution")
        try:
            distribution = Distribution(**data)
        except TypeError:
            raise fields.problem("distribution", f"has unknown field(s): {sorted(data)}") from None
        problem = distribution_problem(distribution)
        if problem is not None:
            raise DriverError(KIND_CONFIG, f"spec.params.distribution.{problem}")
        found["distribution"] = distribution
    return found


def plan(params: BuiltinParams, cores: int) -> list[tuple[int, tuple[int, int]]]:
    """Per load process: its connections and its share of the keyspace (for preloading)."""
    processes = min(params.processes or cores, params.connections)
    base, extra = divmod(params.connections, processes)
    keyspace = params.keyspace
    shares = []
    for index in range(processes):
        first = keyspace * index // processes
        end = keyspace * (index + 1) // processes
        shares.append((base + (1 if index < extra else 0), (first, end)))
    return shares


def load_shapes(params: BuiltinParams, cores: int) -> list[LoadShape]:
    """What each load process of :func:`plan` will hold, for the memory estimate."""
    set_ratio, value_size = params.set_ratio, params.value_size
    preload_request = 0
    if params.preload_command is not None:
        preload_request = request_size_estimate(
            [CommandTemplate((params.preload_command,), False, 1.0, "PRELOAD", None)],
            params.value_size)
    if params.templates is not None:  # every request counted as large as the largest one
        set_ratio = 1.0
        value_size = request_size_estimate(
            parse_templates(params.templates, "spec.params.templates"), params.value_size
        )
    return [
        LoadShape(
            connections=connections,
            pipeline=params.pipeline,
            set_ratio=set_ratio,
            keyspace=params.keyspace,
            value_size=value_size,
            preload_keys=end - first if params.preload else 0,
            preload_request=preload_request,
        )
        for connections, (first, end) in plan(params, cores)
    ]
