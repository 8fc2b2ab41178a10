"""What each host's sampler is asked to watch (``start_metrics``). Pure: no I/O.

Every host samples on the load's timeline. A host that runs a target server also watches the
server's processes (by their listening port) and takes Redis INFO from the run's target at the
start and the end of every repetition, at the data address the clients use (the first RESP
target on the host: none for an HTTP server alone; every target's process is watched).
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.drivers.spec import Timeline
from agent.metrics.model import MetricsPlan, RedisTarget
from coordinator.inventory.schema import Host, Inventory
from coordinator.run.loadspec import target_servers


def metrics_plan(inventory: Inventory, host: Host, timeline: Timeline,
                 passwords: Mapping[str, str | None]) -> MetricsPlan:
    """``passwords``: each target server's, by name."""
    ports = tuple(sorted(servers_by_host(inventory).get(host.name, {})))
    on_host = [server for server in target_servers(inventory)
               if server.host == host.name and server.kind == "resp"]  # INFO speaks RESP
    redis = None
    if on_host:
        target = on_host[0]
        password = passwords.get(target.name)
        redis = RedisTarget(address=inventory.data_address(target), port=target.port,
                            password=password, username=target.username,
                            tls=target.tls is not None)
    return MetricsPlan(interval_ns=timeline.interval_ns,
                       warmup_intervals=timeline.warmup_intervals,
                       intervals=timeline.intervals, server_ports=ports, redis=redis)


def servers_by_host(inventory: Inventory) -> dict[str, dict[int, str]]:
    """host -> its servers' ports -> their names: how a host's server processes (each
    recorded with the ports it listens on) are told apart when it runs several."""
    found: dict[str, dict[int, str]] = {}
    for server in inventory.servers:
        found.setdefault(server.host, {})[server.port] = server.name
    return found


def host_roles(inventory: Inventory, host: Host) -> list[str]:
    """``client`` and/or ``server``, as the metrics record them."""
    servers = {server.name for server in inventory.server_hosts}
    roles = ["client"] if "client" in host.roles else []
    return [*roles, "server"] if host.name in servers else roles
