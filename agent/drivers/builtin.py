"""The builtin driver: a Redis/RESP load generator in load processes of its own.

``params`` of a ``"driver": "builtin"`` spec (all required but ``seed``)::

    {"processes": null | P,     null: this host's usable cores (CPU affinity respected)
     "connections": C,          over all processes, spread evenly (P is at most C)
     "pipeline": N,             requests per batch on a connection (closed loop)
     "set_ratio": 0.1,          share of SETs; the rest are GETs
     "keyspace": K,             keys key:0 .. key:K-1, uniform
     "value_size": B,           bytes per SET value
     "rate": null | R,          open loop: R requests/s for the host (agent/drivers/schedule.py)
     "arrivals": "constant",    optional: the open loop's schedule, constant or poisson
     "timeout": 10.0,           optional: seconds without a reply before requests time out
     "preload": false,          SET every key once during prepare, so GETs hit
     "preload_command": null,   optional: the preload's command per key instead of SET
     "seed": null | S,          optional: the request streams' seed (default: random)
     "templates": null | [...], optional: command templates (agent.drivers.templates)
     "setup": [[word, ...]],    optional: commands sent once before the load
     "key_prefix": "key:",      optional: keys are key_prefix + n
     "distribution": {...}}     optional: agent.drivers.keyspace.Distribution's fields

Each load process (:mod:`agent.drivers.worker`) runs its share of the connections and sends
every finished interval to the agent over its channel. Everything but the plan is the kit's
(:class:`~agent.drivers.kit.process_driver.ProcessDriver`): starting and reading the
processes, readiness, T0, progress, stop and the merged report.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Sequence
from typing import Final

import hiredis
import psutil

from agent import __version__
from agent.drivers import worker
from agent.drivers.base import DriverError
from agent.drivers.builtin_params import BuiltinParams, load_shapes, parse_params, plan
from agent.drivers.errors import KIND_MEMORY
from agent.drivers.kit.process_driver import ProcessDriver, ProcessPlan
from agent.drivers.memory import load_bytes, memory_problem
from agent.drivers.resp_connection import check_source_address
from agent.drivers.resp_tls import client_context
from agent.drivers.spec import LoadSpec
from agent.drivers.worker import OpenLoopPlan, WorkerConfig

log = logging.getLogger("agent.drivers.builtin")

_SEED_SPREAD: Final = 0x9E3779B97F4A7C15


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def available_memory_bytes() -> int:
    """Memory the host can give without swapping (psutil's ``available``)."""
    return int(psutil.virtual_memory().available)


class BuiltinDriver(ProcessDriver):
    name = "builtin"
    version = f"coord {__version__}, hiredis {hiredis.__version__}"
    process_module = worker.MODULE

    def __init__(
        self, cores: int | None = None, available_memory: Callable[[], int] | None = None
    ) -> None:
        super().__init__()
        self._cores = cores if cores is not None else usable_cores()
        self._available_memory = available_memory or available_memory_bytes

    def plan_load(self, spec: LoadSpec) -> Sequence[ProcessPlan]:
        """One load process per core (or ``processes``), connections and keyspace split."""
        params = parse_params(dict(spec.params))
        if spec.target.tls is not None:
            client_context(spec.target.tls)  # its files readable here: one line, before any load
        self._check_memory(params)
        check_source_address(spec.target.source_address)
        base_seed = params.seed if params.seed is not None else random.getrandbits(63)
        plans = []
        first_connection = 0
        for index, (connections, keys) in enumerate(plan(params, self._cores)):
            open_loop = None
            if params.rate is not None:
                open_loop = OpenLoopPlan(params.rate, params.arrivals, params.connections,
                                         first_connection)
            first_connection += connections
            config = WorkerConfig(
                index=index,
                target=spec.target,
                connections=connections,
                pipeline=params.pipeline,
                set_ratio=params.set_ratio,
                keyspace=params.keyspace,
                value_size=params.value_size,
                seed=(base_seed + index * _SEED_SPREAD) % (1 << 64),
                preload=keys if params.preload else None,
                timeline=spec.timeline,
                histogram=spec.histogram,
                open_loop=open_loop,
                templates=params.templates,
                setup=params.setup,
                key_prefix=params.key_prefix,
                distribution=params.distribution,
                key_start=keys[0],
                reply_timeout_s=params.reply_timeout_s,
                busy_poll_ns=round(params.busy_poll_s * 1e9),
                preload_command=params.preload_command,
            )
            plans.append(ProcessPlan(connections, config.to_json()))
        return plans

    def pipeline(self, spec: LoadSpec) -> int | None:
        return parse_params(dict(spec.params)).pipeline

    def _check_memory(self, params: BuiltinParams) -> None:
        """Refuse, before any process starts, a load the host has not the memory for."""
        shapes = load_shapes(params, self._cores)
        needed = load_bytes(shapes, preload_batch=worker.PRELOAD_BATCH, recv_size=worker.RECV_SIZE)
        available = self._available_memory()
        problem = memory_problem(needed, available, len(shapes))
        if problem is not None:
            raise DriverError(KIND_MEMORY, problem)
        log.info("the load needs about %d bytes of memory; %d available", needed, available)
