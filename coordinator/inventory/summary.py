"""What `coord inventory check` shows: the hosts, the targets and what a run would do.

Builds rich renderables from an inventory and prints nothing itself, so the CLI decides where
output goes (and tests can render to a string).
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from coordinator.inventory.loader import LoadedInventory
from coordinator.inventory.schema import Inventory
from coordinator.lab.state import LabStatus
from coordinator.run.steps import plan_lines

MAX_ROWS = 50
"""Rows shown per table: a 60,000-host inventory is checked in full but not printed in full
(rendering the table cost more than checking the file)."""


def inventory_summary(loaded: LoadedInventory) -> RenderableType:
    """A table of hosts and servers and a few lines describing the run."""
    inventory = loaded.inventory
    hosts = Table(title=f"inventory {inventory.name!r} ({loaded.source})", title_justify="left")
    for column in ("host", "roles", "address", "user", "python", "labels"):
        hosts.add_column(column)
    for host in inventory.hosts[:MAX_ROWS]:
        user = host.user or inventory.ssh.user or "(operator)"
        address = f"{host.address}:{host.port}"
        labels = ", ".join(f"{key}={value}" for key, value in host.labels.items())
        hosts.add_row(host.name, ",".join(host.roles), address, user, host.python, labels)
    servers = Table(title="targets", title_justify="left")
    for column in ("server", "host", "port", "auth", "tls"):
        servers.add_column(column)
    for server in inventory.servers[:MAX_ROWS]:
        auth = (
            f"password file {server.password_file}" if server.password_file
            else f"password from ${server.password_env}" if server.password_env
            else "password" if server.password else "none"
        )
        servers.add_row(server.name, server.host, str(server.port), auth,
                        "yes" if server.tls else "no")
    parts: list[RenderableType] = [hosts]
    if len(inventory.hosts) > MAX_ROWS:
        parts.append(Text(f"... and {len(inventory.hosts) - MAX_ROWS} more host(s)"))
    parts.append(servers)
    if len(inventory.servers) > MAX_ROWS:
        parts.append(Text(f"... and {len(inventory.servers) - MAX_ROWS} more server(s)"))
    return Group(*parts, Text("\n".join(run_plan(inventory))))


def run_plan(inventory: Inventory) -> list[str]:
    """One line per step `coord run` would take with this inventory: the run's own step list
    (:data:`coordinator.run.steps.STEPS`), so nothing is announced that no run performs."""
    return ["a run would:", *plan_lines(inventory)]


def lab_summary(status: LabStatus) -> RenderableType:
    """One row per lab host (address, user, sshd, processes) and the lab's health."""
    spec = status.spec
    table = Table(title=f"lab {spec.name!r}: {spec.clients} client(s), {spec.subnet}",
                  title_justify="left")
    for column in ("host", "role", "address", "namespace", "user", "sshd", "processes"):
        table.add_column(column)
    for host in status.hosts:
        table.add_row(host.name, host.role, host.address, host.namespace, host.user,
                      "up" if status.sshd.get(host.name) else "DOWN",
                      str(status.processes.get(host.name, 0)))
    lines = [
        f"redis on the server host: {'answers PING' if status.redis else 'NOT answering'}",
        f"inventory: {status.inventory_path}",
        f"known_hosts: {status.known_hosts}",
    ]
    if spec.model_server:
        lines.insert(1, "model server on the server host: "
                     f"{'answers GET /health' if status.model_server else 'NOT answering'} "
                     f"({spec.model_workers} workers, {spec.model_threads} threads, "
                     f"{spec.model_intra_op_threads} intra-op threads)")
    if spec.client_cpu is not None:
        lines.append(f"client CPU quota: {spec.client_cpu} core(s) per client host")
    if spec.server_cpu is not None:
        lines.append(f"server CPU quota: {spec.server_cpu} core(s) (sshd and redis-server)")
    if status.healthy:
        lines.append("healthy")
    else:
        lines.extend(f"problem: {problem}" for problem in status.problems or ["incomplete build"])
    return Group(table, Text("\n".join(lines)))
