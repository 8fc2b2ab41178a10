"""The platform description of a fleet: every agent describes its host, and the agent that
reaches each target server as the load does (the first client, else the server's own host)
describes the server. Used by `coord run` (step "describe platform") and `coord describe`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from agent.messages import PlatformDescription, ServerProbe
from coordinator.core.platform import (
    PlatformDifference,
    PlatformRecord,
    diff_platforms,
    host_record,
    server_record,
)
from coordinator.inventory.schema import Inventory, Server
from coordinator.inventory.server_auth import server_password
from coordinator.remote.fanout import FleetResult, StageReporter, fan_out
from coordinator.remote.fleet import Fleet
from coordinator.results.io import ResultsError, load_results


def server_probe(inventory: Inventory, server: Server, prober: str,
                 password: str | None) -> ServerProbe:
    """How ``prober``'s agent reaches ``server``: the data address, and the load's source
    address when the prober is a client that has one."""
    source = inventory.host(prober).load_source_address
    return ServerProbe(address=inventory.data_address(server), port=server.port,
                       username=server.username, password=password, source_address=source)


def prober_of(inventory: Inventory, server: Server, up: Sequence[str]) -> str | None:
    """The host whose agent describes ``server``: the first client whose agent is up, else
    the server's own host (None if neither is up)."""
    for host in inventory.clients:
        if host.name in up:
            return host.name
    return server.host if server.host in up else None


def describe_fleet(fleet: Fleet, inventory: Inventory, passwords: Mapping[str, str | None]
                   ) -> tuple[PlatformRecord, FleetResult[PlatformDescription]]:
    """Every started agent's host, and each of ``passwords``' servers (server name ->
    password), in parallel. A server whose prober has no agent is left out; a host whose agent
    cannot answer is in the result's failures. HTTP servers are not described (the
    description asks a RESP server its INFO); their hosts are."""
    sessions = fleet.sessions
    servers = [server for server in inventory.servers
               if server.name in passwords and server.kind == "resp"]
    asks: dict[str, list[Server]] = {}
    for server in servers:
        prober = prober_of(inventory, server, list(sessions))
        if prober is not None:
            asks.setdefault(prober, []).append(server)

    def describe(name: str, report: StageReporter) -> list[PlatformDescription]:
        link, asked = sessions[name].link, asks.get(name, [])
        probes = [server_probe(inventory, server, name, passwords[server.name])
                  for server in asked]
        if not probes:
            return [link.describe()]
        return [link.describe(probe) for probe in probes]

    described = fan_out(sorted(sessions), describe)
    hosts = [host_record(name, answers[0].host)
             for name, answers in sorted(described.succeeded.items())]
    server_records = []
    for name, answers in sorted(described.succeeded.items()):
        for server, answer in zip(asks.get(name, []), answers, strict=False):
            if answer.server is not None:
                server_records.append(server_record(server.name, name, answer.server))
    first = FleetResult({name: answers[0] for name, answers in described.succeeded.items()},
                        described.failed)
    return PlatformRecord(hosts=hosts, servers=server_records), first


def describe_inventory(fleet: Fleet, inventory: Inventory
                       ) -> tuple[PlatformRecord, FleetResult[PlatformDescription]]:
    """`coord describe`: every started agent's host and every server of the inventory (each
    server's password read as a run reads it)."""
    passwords = {server.name: server_password(server, index)
                 for index, server in enumerate(inventory.servers)}
    return describe_fleet(fleet, inventory, passwords)


def run_platform(path: Path) -> PlatformRecord:
    """The platform a run's results (a results directory or its ``results.json``) recorded;
    ``ResultsError`` naming the file when it has none (a run of coord before the field, or one
    that failed before describing its hosts)."""
    document = load_results(path)
    if document.platform is None:
        raise ResultsError(f"{path}: these results carry no platform description (a run of an "
                           f"older coord, or one that ended before its hosts were described)")
    return document.platform


def compare_runs(first: Path, second: Path) -> list[PlatformDifference]:
    """`coord describe --diff`: what differs between the platforms of two runs."""
    return diff_platforms(run_platform(first), run_platform(second))
