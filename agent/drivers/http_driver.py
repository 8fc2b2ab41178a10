"""The http driver: keep-alive HTTP/1.1 load in load processes of its own
(:mod:`agent.drivers.http_worker`), on the driver kit like the builtin driver.

``params``: :mod:`agent.drivers.http_params`; ``rate`` makes it an open loop (the builtin
driver's schedule), ``target.tls`` speaks HTTPS (:mod:`agent.drivers.resp_tls`'s context).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final

import httptools

from agent import __version__
from agent.drivers import http_worker
from agent.drivers.builtin import usable_cores
from agent.drivers.http_params import parse_params, plan
from agent.drivers.http_worker import HttpWorkerConfig
from agent.drivers.kit.process_driver import ProcessDriver, ProcessPlan
from agent.drivers.resp_connection import check_source_address
from agent.drivers.resp_tls import client_context
from agent.drivers.spec import LoadSpec
from agent.drivers.worker import OpenLoopPlan

_SEED_SPREAD: Final = 0x9E3779B97F4A7C15


class HttpDriver(ProcessDriver):
    name = "http"
    version = f"coord {__version__}, httptools {httptools.__version__}"
    process_module = http_worker.MODULE

    def __init__(self, cores: int | None = None) -> None:
        super().__init__()
        self._cores = cores if cores is not None else usable_cores()

    def plan_load(self, spec: LoadSpec) -> Sequence[ProcessPlan]:
        """One load process per core (or ``processes``), connections split evenly."""
        params = parse_params(dict(spec.params))
        if spec.target.tls is not None:
            client_context(spec.target.tls)  # its files readable here: one line, before any load
        check_source_address(spec.target.source_address)
        base_seed = params.seed if params.seed is not None else random.getrandbits(63)
        shares = plan(params, self._cores)
        plans = []
        first_connection = 0
        for index, connections in enumerate(shares):
            open_loop = None
            if params.rate is not None:
                open_loop = OpenLoopPlan(params.rate, params.arrivals, params.connections,
                                         first_connection)
            first_connection += connections
            plans.append(ProcessPlan(connections, HttpWorkerConfig(
                index=index, processes=len(shares), target=spec.target,
                connections=connections, params=dict(spec.params),
                seed=(base_seed + index * _SEED_SPREAD) % (1 << 64),
                timeline=spec.timeline, histogram=spec.histogram, open_loop=open_loop,
            ).to_json()))
        return plans

    def pipeline(self, spec: LoadSpec) -> int | None:
        return 1
