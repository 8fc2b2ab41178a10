"""The load spec an agent's driver receives: built from the inventory, pure.

The coordinator fixes everything agents must agree on (phases, interval, histogram units,
range and precision) here, so that their histograms can be added and their intervals lined up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from coordinator.core.errors import UsageError
from coordinator.core.histograms import HISTOGRAM_PARAMS
from coordinator.inventory.schema import Host, Inventory, Server

SPEC_FORMAT = 1


@dataclass(frozen=True)
class Phases:
    """Whole sampling intervals of warm-up and measure, as every agent will count them."""

    interval_s: float
    warmup_intervals: int
    measure_intervals: int

    @property
    def total_s(self) -> float:
        """Seconds from the start instant to the end of the measure phase."""
        return self.interval_s * (self.warmup_intervals + self.measure_intervals)


def phases(inventory: Inventory) -> Phases:
    """The run's phases in whole intervals (a partial interval is rounded up)."""
    bench = inventory.benchmark
    interval = bench.interval
    warmup = int(-(-round(bench.warmup * 1e9) // round(interval * 1e9)))
    measure = max(1, int(-(-round(bench.duration * 1e9) // round(interval * 1e9))))
    return Phases(interval, warmup, measure)


def target_of(inventory: Inventory) -> Server:
    """The server under load (one per run for now)."""
    if len(inventory.servers) > 1:
        names = ", ".join(server.name for server in inventory.servers)
        raise UsageError(f"servers: one target per run is supported for now, got {names}")
    return inventory.servers[0]


def load_spec(inventory: Inventory, client: Host | None = None, *, password: str | None,
              first_load: bool = False) -> str:
    """The JSON text sent to ``client``'s agent's ``prepare_load``.

    The target is the server's data address (``servers[].address``, else its host's SSH
    address); the load leaves from the client's ``load_source_address`` when it has one.
    ``password`` is the target's, as ``inventory.server_auth.target_password`` read it (from
    the inventory, a file or the environment): this module does no I/O.
    ``benchmark.builtin.preload`` fills the keyspace once, so only the ``first_load`` of a run
    (one client, first repetition) asks for it.
    """
    bench = inventory.benchmark
    if bench.driver != "builtin":
        raise UsageError(
            f"benchmark.driver: {bench.driver} is not supported by `coord run` yet; use builtin"
        )
    server = target_of(inventory)
    run_phases = phases(inventory)
    tls = None
    if server.tls is not None:
        tls = server.tls.model_dump(mode="json")
    params = bench.builtin
    spec = {
        "format": SPEC_FORMAT,
        "driver": bench.driver,
        "target": {
            "address": inventory.data_address(server),
            "port": server.port,
            "source_address": client.load_source_address if client is not None else None,
            "password": password,
            "username": server.username,
            "tls": tls,
        },
        "warmup_s": run_phases.interval_s * run_phases.warmup_intervals,
        "duration_s": run_phases.interval_s * run_phases.measure_intervals,
        "interval_s": run_phases.interval_s,
        "histogram": {
            "lowest_usec": HISTOGRAM_PARAMS.lowest_usec,
            "highest_usec": HISTOGRAM_PARAMS.highest_usec,
            "significant_figures": HISTOGRAM_PARAMS.significant_figures,
        },
        "params": {
            "processes": params.processes,
            "connections": params.connections,
            "pipeline": params.pipeline,
            "set_ratio": params.set_ratio,
            "keyspace": params.keyspace,
            "value_size": params.value_size,
            "rate": params.rate,
            "preload": params.preload and first_load,
        },
    }
    return json.dumps(spec, sort_keys=True)
