"""The agent commands' work: deploy, status, stop and logs over a set of hosts.

Each function takes an inventory and a host selection, does its work on every host in
parallel through :func:`.fanout.fan_out`, and returns per-host results; printing is
the CLI's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.core.errors import UsageError
from coordinator.inventory.schema import Host, Inventory
from coordinator.remote.agent_link import AgentStatus
from coordinator.remote.cache_dir import cache_dir_refusal
from coordinator.remote.deploy import DeployOptions, connect, host_state_dir, ssh_defaults
from coordinator.remote.fanout import FleetResult, ProgressView, StageReporter, fan_out
from coordinator.remote.fleet import AgentSession, Fleet
from coordinator.remote.leftovers import (
    Cleaned,
    HeldAgent,
    StrayStop,
    agent_log,
    clean_host,
    find_held_agent,
    stop_stray_agent,
)


@dataclass(frozen=True)
class AgentRow:
    """One line of an agents table."""

    session: AgentSession
    status: AgentStatus | None


def agents_status(fleet: Fleet) -> dict[str, AgentRow]:
    """Each live agent of ``fleet`` with its status (None when it did not answer)."""
    statuses = fleet.status()
    return {
        name: AgentRow(session, statuses.succeeded.get(name))
        for name, session in sorted(fleet.sessions.items())
    }


def stop_agents(inventory: Inventory, hosts: Sequence[Host], options: DeployOptions,
                view: ProgressView | None = None) -> FleetResult[StrayStop]:
    """Stop any agent left running on each host (by another coord process), group and all."""
    defaults = ssh_defaults(inventory, options)
    by_name = {host.name: host for host in hosts}

    def one(name: str, report: StageReporter) -> StrayStop:
        with connect(by_name[name], defaults, report) as ssh:
            report("stopping agent")
            return stop_stray_agent(ssh, host_state_dir(inventory.agent.cache_dir, name))

    return fan_out(list(by_name), one, view)


def fetch_logs(inventory: Inventory, hosts: Sequence[Host], options: DeployOptions,
               lines: int, view: ProgressView | None = None) -> FleetResult[str | None]:
    """The tail of each host's agent log (None where the host has none)."""
    defaults = ssh_defaults(inventory, options)
    by_name = {host.name: host for host in hosts}

    def one(name: str, report: StageReporter) -> str | None:
        with connect(by_name[name], defaults, report) as ssh:
            report("reading log")
            return agent_log(ssh, host_state_dir(inventory.agent.cache_dir, name), lines)

    return fan_out(list(by_name), one, view)


def held_agents(inventory: Inventory, hosts: Sequence[Host], options: DeployOptions,
                view: ProgressView | None = None) -> FleetResult[HeldAgent | None]:
    """Each host's agent left running by another coord process (``deploy --hold``), or None.

    Only looks: starting an agent here would take over the held one's pid file, and
    `coord agents stop` could no longer find it.
    """
    defaults = ssh_defaults(inventory, options)
    by_name = {host.name: host for host in hosts}

    def one(name: str, report: StageReporter) -> HeldAgent | None:
        with connect(by_name[name], defaults, report) as ssh:
            report("looking for a held agent")
            return find_held_agent(ssh, host_state_dir(inventory.agent.cache_dir, name))

    return fan_out(list(by_name), one, view)


def check_clean_target(inventory: Inventory) -> None:
    """``UsageError`` unless ``agent.cache_dir`` is clearly coord's own directory."""
    refusal = cache_dir_refusal(inventory.agent.cache_dir)
    if refusal is not None:
        raise UsageError(f"agent.cache_dir: refusing to remove it: {refusal}")


def clean_agents(inventory: Inventory, hosts: Sequence[Host], options: DeployOptions,
                 view: ProgressView | None = None) -> FleetResult[Cleaned]:
    """Stop any agent on each host and remove coord's cache directory there (bundles, pid file,
    logs); ``UsageError`` before any host is touched if ``agent.cache_dir`` is not clearly
    coord's own."""
    check_clean_target(inventory)
    cache_dir = inventory.agent.cache_dir
    defaults = ssh_defaults(inventory, options)
    by_name = {host.name: host for host in hosts}

    def one(name: str, report: StageReporter) -> Cleaned:
        with connect(by_name[name], defaults, report) as ssh:
            report("cleaning", cache_dir)
            return clean_host(ssh, cache_dir, host_state_dir(cache_dir, name))

    return fan_out(list(by_name), one, view)
