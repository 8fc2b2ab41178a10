"""`coord doctor`'s verdicts: from facts gathered on each host, every problem a run would hit,
each with its fix. Pure: gathering the facts over SSH is :mod:`coordinator.doctor.probe`.

A run needs, on every host: an SSH login, TCP forwarding (the link to the agent is a
``direct-tcpip`` channel), SFTP (the bundle is uploaded with it), a Python >= 3.10, some free
memory and disk for the agent and its bundle, and the tools of the inventory's driver and
baseline; from every client, a TCP connection to the server's data address and port.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coordinator.inventory.schema import Host, Inventory

MIN_PYTHON = (3, 10)
"""The oldest Python an agent runs on."""
MIN_FREE_MEMORY = 256 * 2**20
"""Bytes of available memory below which a host is flagged (the agent and load processes)."""
MIN_FREE_DISK = 200 * 2**20
"""Bytes free where the cache directory lives below which a host is flagged (bundles)."""


@dataclass(frozen=True)
class HostFacts:
    """What was found on one host; None where the fact could not be gathered (the reason is in
    the matching ``*_error``)."""

    ssh_error: str | None = None
    forwarding_error: str | None = None
    sftp_error: str | None = None
    python: tuple[int, ...] | None = None
    python_error: str | None = None
    free_memory: int | None = None
    free_disk: int | None = None
    disk_path: str | None = None
    tools: dict[str, bool] = field(default_factory=dict)
    """Tool name -> found on the login PATH."""
    reach: dict[str, str | None] = field(default_factory=dict)
    """``address:port`` -> None if a TCP connection from this host succeeded, else why not."""


@dataclass(frozen=True)
class Finding:
    """One problem on one host, and what to do about it."""

    host: str
    check: str
    problem: str
    fix: str


def needed_tools(inventory: Inventory, host: Host) -> list[str]:
    """The programs ``host`` must have for the inventory's driver and baseline."""
    tools: list[str] = []
    is_client = "client" in host.roles
    is_server = host.name in {h.name for h in inventory.server_hosts}
    driver = inventory.benchmark.driver
    if is_client and driver == "redis-benchmark":
        tools.append("redis-benchmark")
    if is_client and driver == "memtier":
        tools.append("memtier_benchmark")
    if inventory.baseline.enabled:
        if is_client:
            tools.append("netperf")
        if is_server:
            tools.append("netserver")
    return tools


def endpoints(inventory: Inventory) -> list[str]:
    """``address:port`` of every server's data address, as clients must reach them."""
    result = []
    for server in inventory.servers:
        address = inventory.data_address(server)
        shown = f"[{address}]" if ":" in address else address
        result.append(f"{shown}:{server.port}")
    return result


def _mib(count: int) -> str:
    return f"{count / 2**20:.0f} MiB"


def diagnose(inventory: Inventory, facts: dict[str, HostFacts]) -> list[Finding]:
    """Every problem found, host by host in inventory order; empty when a run can start."""
    findings: list[Finding] = []
    for host in inventory.hosts:
        found = facts.get(host.name)
        if found is None:
            continue
        findings += _host_findings(inventory, host, found)
    return findings


def _host_findings(inventory: Inventory, host: Host, facts: HostFacts) -> list[Finding]:
    name = host.name
    if facts.ssh_error is not None:
        return [Finding(name, "ssh", facts.ssh_error,
                        "check hosts[].address/port/user/key_file and ssh.known_hosts; "
                        "try `ssh -p PORT USER@ADDRESS`")]
    out: list[Finding] = []
    if facts.forwarding_error is not None:
        out.append(Finding(name, "tcp forwarding", facts.forwarding_error,
                           "allow it in the host's sshd_config: AllowTcpForwarding yes "
                           "(or local), then reload sshd"))
    if facts.sftp_error is not None:
        out.append(Finding(name, "sftp", facts.sftp_error,
                           "enable the subsystem in sshd_config: Subsystem sftp internal-sftp"))
    if facts.python_error is not None or facts.python is None:
        out.append(Finding(name, "python", facts.python_error or f"{host.python}: no answer",
                           f"install python3 >= {'.'.join(map(str, MIN_PYTHON))} or set "
                           "hosts[].python to its path"))
        return out
    if facts.python < MIN_PYTHON:
        version = ".".join(map(str, facts.python))
        out.append(Finding(name, "python", f"{host.python} is Python {version}",
                           f"install python3 >= {'.'.join(map(str, MIN_PYTHON))} or set "
                           "hosts[].python to a newer one"))
    if facts.free_memory is not None and facts.free_memory < MIN_FREE_MEMORY:
        out.append(Finding(name, "memory", f"{_mib(facts.free_memory)} available",
                           f"free at least {_mib(MIN_FREE_MEMORY)} (stop what uses it)"))
    if facts.free_disk is not None and facts.free_disk < MIN_FREE_DISK:
        out.append(Finding(name, "disk",
                           f"{_mib(facts.free_disk)} free at {facts.disk_path or '?'}",
                           f"free at least {_mib(MIN_FREE_DISK)} there, or point "
                           "agent.cache_dir elsewhere"))
    for tool in needed_tools(inventory, host):
        if not facts.tools.get(tool, False):
            out.append(Finding(name, "tools", f"{tool} is not on the login PATH",
                               f"install {tool} on the host" + _tool_reason(inventory, tool)))
    if "client" in host.roles:
        for endpoint in endpoints(inventory):
            reason = facts.reach.get(endpoint, "not checked")
            if reason is not None:
                out.append(Finding(name, "target", f"cannot connect to {endpoint}: {reason}",
                                   "start the server, check servers[].address/port, its bind "
                                   "address and the firewall between the hosts"))
    return out


def _tool_reason(inventory: Inventory, tool: str) -> str:
    if tool in ("netperf", "netserver"):
        return " (for the baseline) or set baseline.enabled: false"
    return f" (benchmark.driver is {inventory.benchmark.driver})"
