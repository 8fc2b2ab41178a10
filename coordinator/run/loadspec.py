"""The load spec an agent's driver receives: built from the inventory, pure.

The coordinator fixes everything agents must agree on (phases, interval, histogram units,
range and precision) here, so that their histograms can be added and their intervals lined up.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from agent.drivers.builtin import BuiltinDriver
from agent.drivers.http_driver import HttpDriver
from agent.drivers.memtier import MemtierDriver
from agent.drivers.redis_benchmark import RedisBenchmarkDriver
from agent.drivers.spec import SPEC_FORMAT, Timeline
from coordinator.core.errors import UsageError
from coordinator.core.histograms import HISTOGRAM_PARAMS
from coordinator.inventory.schema import Host, Inventory, Server


def phases(inventory: Inventory) -> Timeline:
    """The run's phases in whole intervals (a partial interval is rounded up), computed once
    per run and sent as they are: agents never convert seconds into intervals.

    A driver without per-interval data (:data:`ONE_WINDOW_DRIVERS`) gets one measure interval
    as long as the measure phase, after whole such intervals covering the warm-up (which the
    driver runs separately, unmeasured): no interval is invented."""
    bench = inventory.benchmark
    if bench.driver in ONE_WINDOW_DRIVERS and bench.targets is None:
        length_ns = round(bench.duration * 1e9)
        warmup_runs = -(-round(bench.warmup * 1e9) // length_ns)
        return Timeline(interval_ns=length_ns, warmup_intervals=warmup_runs, measure_intervals=1)
    interval_ns = round(bench.interval * 1e9)
    warmup = -(-round(bench.warmup * 1e9) // interval_ns)
    measure = max(1, -(-round(bench.duration * 1e9) // interval_ns))
    return Timeline(interval_ns=interval_ns, warmup_intervals=warmup, measure_intervals=measure,
                    drain_ns=round(bench.drain_timeout * 1e9))


@dataclass(frozen=True)
class ClientTarget:
    """What one client loads: the server, with the driver speaking to it, and whether it is
    the first client of its target (the one that preloads its keyspace)."""

    server: Server
    driver: str
    first_client: bool


def target_of(inventory: Inventory) -> Server:
    """The run's first (for most runs: only) server under load: the one the results' target
    record names. With ``benchmark.targets``, the first target's."""
    targets = inventory.benchmark.targets
    if targets is not None:
        return server_named(inventory, targets[0].server)
    if len(inventory.servers) > 1:
        names = ", ".join(server.name for server in inventory.servers)
        raise UsageError(f"servers: a run loads one server, got {names}; keep one, or name "
                         "each in benchmark.targets with the clients loading it")
    return inventory.servers[0]


def target_servers(inventory: Inventory) -> list[Server]:
    """Every server the run loads, in the order of ``benchmark.targets`` (else the one)."""
    targets = inventory.benchmark.targets
    if targets is None:
        return [target_of(inventory)]
    return [server_named(inventory, target.server) for target in targets]


def server_named(inventory: Inventory, name: str) -> Server:
    """``servers[]``'s entry called ``name`` (checked by the inventory checks; a UsageError
    naming the field if not)."""
    for server in inventory.servers:
        if server.name == name:
            return server
    raise UsageError(f"benchmark.targets: no server named {name!r} in servers")


def client_target(inventory: Inventory, client: Host | None) -> ClientTarget:
    """What ``client`` loads: its target of ``benchmark.targets`` (a UsageError naming the
    field when it is in none), else the one server with ``benchmark.driver``. ``client`` None
    (a spec checked before any host is known): the first target's."""
    targets = inventory.benchmark.targets
    clients = [host.name for host in inventory.clients]
    if targets is None:
        first = client is None or not clients or client.name == clients[0]
        return ClientTarget(target_of(inventory), inventory.benchmark.driver, first)
    for target in targets:
        if client is None or client.name in target.clients:
            first = client is None or client.name == target.clients[0]
            return ClientTarget(server_named(inventory, target.server), target.driver, first)
    name = client.name if client is not None else "?"
    raise UsageError(f"benchmark.targets: client host {name!r} loads no target")


def load_spec(inventory: Inventory, client: Host | None = None, *, password: str | None,
              first_load: bool = False, timeline: Timeline | None = None) -> str:
    """The JSON text sent to ``client``'s agent's ``prepare_load``.

    The target is the server's data address (``servers[].address``, else its host's SSH
    address); the load leaves from the client's ``load_source_address`` when it has one.
    ``password`` is the target's, as ``inventory.server_auth.target_password`` read it (from
    the inventory, a file or the environment): this module does no I/O.
    ``benchmark.builtin.preload`` fills the keyspace once, so only the ``first_load`` of a run
    (one client per target, first repetition) asks for it. ``timeline``: the run's
    :func:`phases` (computed here when not given). With ``benchmark.targets``, the client's
    target gives the server and the driver (:func:`client_target`); ``password`` is that
    server's.
    """
    loads = client_target(inventory, client)
    server, driver = loads.server, loads.driver
    build_params = SPEC_PARAMS.get(driver)
    if build_params is None:
        known = ", ".join(sorted(SPEC_PARAMS))
        raise UsageError(
            f"benchmark.driver: {driver} is not supported by `coord run` yet; use {known}"
        )
    run_phases = timeline if timeline is not None else phases(inventory)
    tls = None
    if server.tls is not None:
        tls = server.tls.model_dump(mode="json")
    spec = {
        "format": SPEC_FORMAT,
        "driver": driver,
        "target": {
            "address": inventory.data_address(server),
            "port": server.port,
            "source_address": client.load_source_address if client is not None else None,
            "password": password,
            "username": server.username,
            "tls": tls,
            **({"db": server.db} if server.db else {}),
            **({"protocol": server.protocol} if server.protocol != 2 else {}),
            **({"cluster": True} if server.cluster else {}),
        },
        "timeline": run_phases.to_json(),
        "histogram": {
            "lowest_usec": HISTOGRAM_PARAMS.lowest_usec,
            "highest_usec": HISTOGRAM_PARAMS.highest_usec,
            "significant_figures": HISTOGRAM_PARAMS.significant_figures,
        },
        "params": build_params(inventory, first_load, server),
    }
    return json.dumps(spec, sort_keys=True)


ONE_WINDOW_DRIVERS: Final = frozenset({RedisBenchmarkDriver.name, MemtierDriver.name})
"""Drivers whose tool gives no per-interval data: a repetition's window is the tool's run."""

ParamsBuilder = Callable[[Inventory, bool, Server], dict[str, Any]]
"""A driver's spec ``params`` from the inventory; the flag is ``first_load`` (see
:func:`load_spec`), the server the one the client loads (default: the run's first)."""


def builtin_params(inventory: Inventory, first_load: bool,
                   server: Server | None = None) -> dict[str, Any]:
    """``params`` of the builtin driver (agent/drivers/builtin_params.py reads them)."""
    params = inventory.benchmark.builtin
    return {
        "processes": params.processes,
        "connections": params.connections,
        "pipeline": params.pipeline,
        "set_ratio": params.set_ratio,
        "keyspace": params.keyspace,
        "value_size": params.value_size,
        "rate": params.rate,
        "arrivals": params.arrivals,
        "timeout": params.timeout,
        "busy_poll": params.busy_poll_usec / 1e6,
        "preload": params.preload and first_load,
        "preload_command": params.preload_command,
        "templates": [t.model_dump(exclude_none=True) for t in params.templates]
        if params.templates is not None else None,
        "setup": params.setup,
        "key_prefix": params.key_prefix,
        "distribution": params.distribution.model_dump(exclude_none=True),
    }


def redis_benchmark_params(inventory: Inventory, first_load: bool,
                           server: Server | None = None) -> dict[str, Any]:
    """``params`` of the redis-benchmark driver (agent/drivers/redis_benchmark_plan.py)."""
    params = inventory.benchmark.redis_benchmark
    return {
        "tests": None if params.command is not None else params.tests,
        "command": params.command,
        "clients": params.clients,
        "threads": params.threads,
        "pipeline": params.pipeline,
        "value_size": params.value_size,
        "keyspace": params.keyspace,
        "requests": params.requests,
        "precision": params.precision,
        "warmup_s": inventory.benchmark.warmup,
    }


def memtier_params(inventory: Inventory, first_load: bool,
                   server: Server | None = None) -> dict[str, Any]:
    """``params`` of the memtier driver (agent/drivers/memtier_command.py, plus warmup_s)."""
    bench = inventory.benchmark
    params = bench.memtier
    commands = None
    if params.commands is not None:
        commands = [{"command": c.command, "ratio": c.ratio, "key_pattern": c.key_pattern}
                    for c in params.commands]
    return {
        "threads": params.threads,
        "clients": params.clients,
        "pipeline": params.pipeline,
        "ratio": None if commands is not None else params.ratio,
        "commands": commands,
        "key_pattern": params.key_pattern,
        "key_minimum": params.key_minimum,
        "key_maximum": params.key_maximum,
        "data_size": params.data_size,
        "test_time": math.ceil(bench.duration) if params.requests is None else None,
        "requests": params.requests,
        "rate_limiting": params.rate_limiting,
        "warmup_s": bench.warmup,
    }


def http_params(inventory: Inventory, first_load: bool,
                server: Server | None = None) -> dict[str, Any]:
    """``params`` of the http driver (agent/drivers/http_params.py): the templates, and the
    target server's base path and common headers."""
    params = inventory.benchmark.http
    server = server if server is not None else target_of(inventory)
    return {
        "processes": params.processes,
        "connections": params.connections,
        "keyspace": params.keyspace,
        "timeout_ns": round(params.timeout * 1e9),
        "rate": params.rate,
        "arrivals": params.arrivals,
        "base_path": server.http.base_path,
        "headers": dict(server.http.headers),
        "requests": [
            {"name": request.name, "method": request.method, "path": request.path,
             "headers": dict(request.headers),
             "body": request.body.to_spec() if request.body is not None else None,
             "weight": request.weight, "expect_status": request.expect_status,
             "json_path": request.json_path}
            for request in params.requests
        ],
    }


SPEC_PARAMS: Final[Mapping[str, ParamsBuilder]] = {
    BuiltinDriver.name: builtin_params,
    RedisBenchmarkDriver.name: redis_benchmark_params,
    MemtierDriver.name: memtier_params,
    HttpDriver.name: http_params,
}
"""The coordinator half of each driver: its spec builder, by the name the agent's
``agent.drivers.DRIVERS`` knows it by. A new driver adds one entry here and one there; the run,
the merge and the results never name a driver."""
