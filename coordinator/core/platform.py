"""The platform description of a run: the models ``results.json`` keeps, the facts a table
shows, and the differences between two runs' platforms. Pure: no I/O.

The agents describe their hosts (:mod:`agent.platform`, messages in :mod:`agent.messages`);
these models hold the same fields, plus the inventory name each description is about. A value
that could not be read is null with its field's name in ``unknown`` (the reason); null without
an ``unknown`` entry means there is none (no CPU quota). :func:`host_facts` and
:func:`server_facts` turn a record into labelled text, one fact per line of ``coord describe``'s
table; :func:`diff_platforms` compares two platforms fact by fact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from pydantic import Field

from agent.messages import HostPlatform, ServerPlatform, encode
from coordinator.core.figures import Model


class ToolVersionRecord(Model):
    """A tool a run may use, as its host has it."""

    name: str = Field(description="the tool's command")
    version: str | None = Field(description="its version line; null: unknown (see reason)")
    reason: str | None = Field(None, description="why the version is unknown")


class InterfaceRecord(Model):
    """One network interface of a host (the loopback left out)."""

    name: str = Field(description="interface name")
    speed_mbps: int | None = Field(description="link speed, Mb/s (/sys/class/net/*/speed)")
    mtu: int | None = Field(description="MTU, bytes")
    driver: str | None = Field(description="driver and its version (ethtool -i)")
    offloads: dict[str, bool] | None = Field(
        description="offloads that change a benchmark's figures, on or off (ethtool -k)"
    )
    unknown: dict[str, str] = Field(description="field -> why it could not be read")


class HostPlatformRecord(Model):
    """One host, as its agent described it when the run started."""

    host: str = Field(description="host name, as in the inventory")
    hostname: str = Field(description="the machine's own host name")
    cpu_model: str | None = Field(description="CPU model name (/proc/cpuinfo)")
    sockets: int | None = Field(description="CPU sockets")
    cores: int | None = Field(description="physical cores, over all sockets")
    threads: int | None = Field(description="logical CPUs (hardware threads)")
    numa_nodes: int | None = Field(description="NUMA nodes")
    governor: str | None = Field(description="CPU frequency governor of cpu0")
    boost: str | None = Field(description="turbo/boost: on or off")
    cpu_idle: str | None = Field(
        None, description="the cpuidle driver, its governor and the idle states cpu0 may enter "
        "(e.g. `haltpoll, governor haltpoll: POLL, haltpoll`); how deep an idle CPU sleeps sets "
        "how long a request to an idle host waits for it to wake (null in results written "
        "before coord recorded it)"
    )
    halt_poll_ns: int | None = Field(
        None, description="a KVM guest's halt polling (`guest_halt_poll_ns` of the haltpoll "
        "cpuidle driver): how long an idle vCPU polls before it halts; 0: it halts at once, and "
        "a request at low load waits for it to wake; null when the driver is not haltpoll"
    )
    memory_bytes: int | None = Field(description="memory (MemTotal), bytes")
    kernel: str = Field(description="kernel: system, release, version, machine (uname)")
    os_release: str | None = Field(description="the OS (os-release PRETTY_NAME)")
    virtualization: str | None = Field(
        description="virtualization (systemd-detect-virt, else the cpuinfo hypervisor flag)"
    )
    dmi_vendor: str | None = Field(description="DMI system vendor: the cloud or maker")
    dmi_product: str | None = Field(description="DMI product name: the instance type or model")
    cpu_quota_cores: float | None = Field(
        description="the tightest CPU quota over the agent's cgroup and its ancestors, in "
        "cores; null: none (or unknown, see unknown)"
    )
    cpu_cgroup: str | None = Field(
        description="cgroup version and path that sets the quota (else the agent's cgroup)"
    )
    clock_source: str | None = Field(description="kernel clock source")
    python: str = Field(description="the agent's Python")
    tools: list[ToolVersionRecord] = Field(description="versions of the tools a run may use")
    interfaces: list[InterfaceRecord] = Field(description="network interfaces but loopback")
    unknown: dict[str, str] = Field(description="field -> why it could not be read")


class ServerPlatformRecord(Model):
    """One target server, as an agent that reaches it described it."""

    server: str = Field(description="server name, as in the inventory")
    described_by: str = Field(description="the host whose agent asked the server")
    endpoint: str = Field(description="address:port asked")
    info: dict[str, str] = Field(
        description="INFO server, less the fields that change as it runs (uptime, pid...)"
    )
    config: dict[str, str] = Field(
        description="CONFIG GET of io-threads, appendonly, save, maxmemory, maxmemory-policy, hz"
    )
    unknown: dict[str, str] = Field(description="info / config.NAME -> why it is unknown")


class PlatformRecord(Model):
    """Where a run ran: every host and every target server."""

    hosts: list[HostPlatformRecord] = Field(description="per host, in inventory-name order")
    servers: list[ServerPlatformRecord] = Field(description="per target server")


def host_record(host: str, message: HostPlatform) -> HostPlatformRecord:
    """An agent's description of ``host``, as the results keep it."""
    return HostPlatformRecord.model_validate({"host": host, **encode(message)}, strict=False)


def server_record(server: str, described_by: str, message: ServerPlatform) -> ServerPlatformRecord:
    return ServerPlatformRecord.model_validate(
        {"server": server, "described_by": described_by, **encode(message)}, strict=False
    )


# --- facts -----------------------------------------------------------------------------------

NONE: Final = "none"


def _shown(value: object, field: str, unknown: Mapping[str, str]) -> str:
    if value is None:
        return f"unknown: {unknown[field]}" if field in unknown else NONE
    return str(value) if value != "" else '""'  # an empty setting (save ""), shown as one


NOT_RECORDED = "not recorded"
"""A fact coord added after a run was described: absent from its results, not "none"."""


def _recorded_later(value: object, field: str, unknown: Mapping[str, str]) -> str:
    """:func:`_shown` for a fact the agents describe since a later coord: with neither a value
    nor a reason, the run predates it."""
    if value is None and field not in unknown:
        return NOT_RECORDED
    return _shown(value, field, unknown)


def _memory(size: int | None) -> str | None:
    return None if size is None else f"{size / 2**30:.1f} GiB"


def _quota(record: HostPlatformRecord) -> str:
    if record.cpu_quota_cores is None and "cpu_quota_cores" in record.unknown:
        return f"unknown: {record.unknown['cpu_quota_cores']}"
    where = f" ({record.cpu_cgroup})" if record.cpu_cgroup else ""
    if record.cpu_quota_cores is None:
        return f"{NONE}{where}"
    return f"{record.cpu_quota_cores:g} cores{where}"


def host_facts(record: HostPlatformRecord) -> dict[str, str]:
    """A host's description as label -> text, in the order a table shows them."""
    unknown = record.unknown
    facts = {
        "hostname": record.hostname,
        "CPU": _shown(record.cpu_model, "cpu_model", unknown),
        "sockets": _shown(record.sockets, "sockets", unknown),
        "cores": _shown(record.cores, "cores", unknown),
        "threads": _shown(record.threads, "threads", unknown),
        "NUMA nodes": _shown(record.numa_nodes, "numa_nodes", unknown),
        "governor": _shown(record.governor, "governor", unknown),
        "boost": _shown(record.boost, "boost", unknown),
        "CPU idle": _recorded_later(record.cpu_idle, "cpu_idle", unknown),
        "halt polling": _recorded_later(None if record.halt_poll_ns is None
                                        else f"{record.halt_poll_ns:,} ns", "halt_poll_ns",
                                        unknown),
        "memory": _shown(_memory(record.memory_bytes), "memory_bytes", unknown),
        "kernel": record.kernel,
        "OS": _shown(record.os_release, "os_release", unknown),
        "virtualization": _shown(record.virtualization, "virtualization", unknown),
        "DMI vendor": _shown(record.dmi_vendor, "dmi_vendor", unknown),
        "DMI product": _shown(record.dmi_product, "dmi_product", unknown),
        "CPU quota": _quota(record),
        "clock source": _shown(record.clock_source, "clock_source", unknown),
        "Python": record.python,
    }
    for tool in record.tools:
        facts[tool.name] = tool.version if tool.version else f"unknown: {tool.reason}"
    for interface in record.interfaces:
        facts.update(interface_facts(interface))
    return facts


def interface_facts(interface: InterfaceRecord) -> dict[str, str]:
    unknown, name = interface.unknown, interface.name
    speed = None if interface.speed_mbps is None else f"{interface.speed_mbps} Mb/s"
    offloads = None
    if interface.offloads is not None:
        offloads = " ".join(f"{key}={'on' if on else 'off'}"
                            for key, on in sorted(interface.offloads.items()))
    return {
        f"{name} speed": _shown(speed, "speed_mbps", unknown),
        f"{name} MTU": _shown(interface.mtu, "mtu", unknown),
        f"{name} driver": _shown(interface.driver, "driver", unknown),
        f"{name} offloads": _shown(offloads, "offloads", unknown),
    }


def server_facts(record: ServerPlatformRecord) -> dict[str, str]:
    """A server's description as label -> text: the endpoint, the performance settings, then
    INFO server."""
    facts = {"endpoint": record.endpoint, "described by": record.described_by}
    for name in sorted({*record.config, *(key[len("config."):] for key in record.unknown
                                           if key.startswith("config."))}):
        facts[f"config {name}"] = _shown(record.config.get(name), f"config.{name}",
                                         record.unknown)
    if "info" in record.unknown:
        facts["INFO server"] = f"unknown: {record.unknown['info']}"
    for key, value in sorted(record.info.items()):
        facts[f"INFO {key}"] = value
    return facts


# --- differences -----------------------------------------------------------------------------


class PlatformDifference(Model):
    """One fact that differs between two platforms."""

    subject: str = Field(description="host NAME or server NAME")
    fact: str = Field(description="the fact's label, as coord describe shows it")
    before: str | None = Field(description="in the first platform; null: absent there")
    after: str | None = Field(description="in the second platform; null: absent there")


#: Facts that name the run's own moment rather than the platform: never a difference.
_NOT_COMPARED: Final = frozenset({"described by"})


def platform_facts(platform: PlatformRecord) -> dict[str, dict[str, str]]:
    """Every fact of a platform, by subject (``host NAME``, ``server NAME``)."""
    facts = {f"host {record.host}": host_facts(record) for record in platform.hosts}
    facts.update({f"server {record.server}": server_facts(record)
                  for record in platform.servers})
    return facts


def diff_platforms(first: PlatformRecord, second: PlatformRecord) -> list[PlatformDifference]:
    """What differs between two platforms, subject by subject, fact by fact (a subject or a
    fact present in one only is a difference too), in the first's order then the second's."""
    before, after = platform_facts(first), platform_facts(second)
    differences = []
    for subject in [*before, *(name for name in after if name not in before)]:
        old, new = before.get(subject, {}), after.get(subject, {})
        if not old or not new:
            differences.append(PlatformDifference(
                subject=subject, fact="(described)", before="yes" if old else None,
                after="yes" if new else None))
            continue
        for fact in [*old, *(label for label in new if label not in old)]:
            if fact in _NOT_COMPARED or old.get(fact) == new.get(fact):
                continue
            differences.append(PlatformDifference(subject=subject, fact=fact,
                                                  before=old.get(fact), after=new.get(fact)))
    return differences
