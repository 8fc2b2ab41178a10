"""The builtin driver's ``params``: their limits, declared once, their parsing and the plan of
load processes they give. Pure (no I/O).

The limits here are the only ones: the agent refuses a spec beyond them, and the inventory's
``benchmark.builtin`` model (``coordinator/inventory/schema.py``) imports them for its fields,
so an inventory that validates is a spec the agent accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from agent.drivers.memory import LoadShape
from agent.drivers.schedule import ARRIVALS, CONSTANT
from agent.drivers.spec import Fields

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


def parse_params(params: dict[str, Any]) -> BuiltinParams:
    """The builtin driver's ``params``; DriverError("config", ...) for anything wrong."""
    fields = Fields(params, "spec.params")
    processes = None
    if fields.get("processes") is not None:
        processes = fields.integer("processes", PROCESSES.minimum, PROCESSES.maximum)
    seed = fields.optional_integer("seed", minimum=0) if fields.has("seed") else None
    rate = None
    if fields.get("rate") is not None:
        rate = fields.number("rate", RATE.minimum, RATE.maximum)
    arrivals = CONSTANT
    if fields.has("arrivals"):
        arrivals = fields.text("arrivals")
        if arrivals not in ARRIVALS:
            raise fields.problem("arrivals", f"must be one of {', '.join(ARRIVALS)}, got "
                                 f"{arrivals!r}")
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
    )
    fields.no_more()
    return parsed


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
    return [
        LoadShape(
            connections=connections,
            pipeline=params.pipeline,
            set_ratio=params.set_ratio,
            keyspace=params.keyspace,
            value_size=params.value_size,
            preload_keys=end - first if params.preload else 0,
        )
        for connections, (first, end) in plan(params, cores)
    ]
