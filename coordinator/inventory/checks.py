"""Checks that span inventory fields: unique names, references, roles, machines, intervals.

Pydantic validates each field on its own; these checks see the whole inventory and return
:class:`~coordinator.core.errors.Problem` records (errors and warnings) naming the field.
"""

from __future__ import annotations

import difflib
import math

from agent.drivers.cluster_templates import check_templates
from agent.drivers.templates import TemplateError, parse_templates
from coordinator.core.durations import format_duration
from coordinator.core.errors import Problem
from coordinator.inventory.schema import MAX_INTERVALS, Host, Inventory, Server

PASSWORD_SOURCES = ("password", "password_file", "password_env")
"""The fields a server's AUTH password may come from; at most one per server."""


def _password_sources(index: int, server: Server) -> list[Problem]:
    """One problem, at the second password field given, when a server has several."""
    given = [name for name in PASSWORD_SOURCES if getattr(server, name) is not None]
    if len(given) < 2:
        return []
    return [
        Problem(
            f"servers[{index}].{given[1]}",
            f"server {server.name!r} is given {' and '.join(given)}; give at most one of "
            f"{', '.join(PASSWORD_SOURCES)}",
        )
    ]


def check_references(inventory: Inventory) -> list[Problem]:
    """Problems that span fields: names, references and roles. Warnings are included."""
    return [
        *_host_name_problems(inventory),
        *_server_problems(inventory),
        *_same_machine_problems(inventory),
        *_role_problems(inventory),
        *_interval_problems(inventory),
        *_repetition_problems(inventory),
        *_driver_kind_problems(inventory),
        *_target_problems(inventory),
        *_cluster_template_problems(inventory),
    ]


def _cluster_template_problems(inventory: Inventory) -> list[Problem]:
    """Against a Redis Cluster, a template whose keys could land on different slots (one
    problem, naming the template: agent.drivers.cluster_templates)."""
    builtin = inventory.benchmark.builtin
    if (inventory.benchmark.driver != "builtin" or builtin.templates is None
            or not any(server.cluster for server in inventory.servers)):
        return []
    templates = parse_templates([t.model_dump(exclude_none=True) for t in builtin.templates])
    try:
        check_templates(templates, builtin.key_prefix, "benchmark.builtin.templates")
    except TemplateError as exc:
        field, _, message = str(exc).partition(": ")
        return [Problem(field, message)]
    return []


def _driver_kind_problems(inventory: Inventory) -> list[Problem]:
    """A server the driver cannot speak to: the http driver loads ``kind: http`` servers, the
    others ``kind: resp`` ones."""
    if inventory.benchmark.targets is not None:
        return []  # each target's driver and server are checked by _target_problems
    wanted = "http" if inventory.benchmark.driver == "http" else "resp"
    return [
        Problem(f"servers[{index}].kind",
                f"server {server.name!r} is kind {server.kind}, but benchmark.driver "
                f"{inventory.benchmark.driver} loads kind {wanted} servers")
        for index, server in enumerate(inventory.servers) if server.kind != wanted
    ]


def _target_problems(inventory: Inventory) -> list[Problem]:
    """``benchmark.targets``: each names a server of the driver's kind once, and client hosts;
    each client loads exactly one target."""
    targets = inventory.benchmark.targets
    if targets is None:
        return []
    problems: list[Problem] = []
    servers = {server.name: server for server in inventory.servers}
    clients = [host.name for host in inventory.clients]
    loaded_by: dict[str, int] = {}
    seen: dict[str, int] = {}
    for index, target in enumerate(targets):
        where = f"benchmark.targets[{index}]"
        server = servers.get(target.server)
        if server is None:
            problems.append(Problem(f"{where}.server", f"no server named {target.server!r} in "
                                    "servers" + suggest(target.server, list(servers))))
        elif target.server in seen:
            problems.append(Problem(f"{where}.server", f"server {target.server!r} is already "
                                    f"loaded by benchmark.targets[{seen[target.server]}]"))
        elif server.kind != ("http" if target.driver == "http" else "resp"):
            problems.append(Problem(f"{where}.driver", f"driver {target.driver} cannot load "
                                    f"server {target.server!r} of kind {server.kind}"))
        seen.setdefault(target.server, index)
        for position, name in enumerate(target.clients):
            if name not in clients:
                problems.append(Problem(f"{where}.clients[{position}]", f"no client host "
                                        f"named {name!r}" + suggest(name, clients)))
            elif name in loaded_by:
                problems.append(Problem(f"{where}.clients[{position}]", f"client {name!r} "
                                        f"already loads benchmark.targets[{loaded_by[name]}]"))
            else:
                loaded_by[name] = index
    idle = [name for name in clients if name not in loaded_by]
    if idle:
        problems.append(Problem("benchmark.targets", f"client host(s) {', '.join(idle)} load "
                                "no target: name each client in one target's clients"))
    return problems


def _host_name_problems(inventory: Inventory) -> list[Problem]:
    """A host name used twice, at its second use."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, host in enumerate(inventory.hosts):
        if host.name in seen:
            problems.append(
                Problem(
                    f"hosts[{index}].name",
                    f"duplicate host name {host.name!r}, already used by hosts[{seen[host.name]}]",
                )
            )
        else:
            seen[host.name] = index
    return problems


def _server_problems(inventory: Inventory) -> list[Problem]:
    """Per server: a name used twice, several passwords, a host that is missing or no server."""
    problems: list[Problem] = []
    by_name = {host.name: host for host in inventory.hosts}
    seen_servers: dict[str, int] = {}
    for index, server in enumerate(inventory.servers):
        if server.name in seen_servers:
            problems.append(
                Problem(
                    f"servers[{index}].name",
                    f"duplicate server name {server.name!r}, already used by "
                    f"servers[{seen_servers[server.name]}]",
                )
            )
        else:
            seen_servers[server.name] = index
        problems += _password_sources(index, server)
        problems += _server_host_problems(index, server, by_name)
    return problems


def _server_host_problems(index: int, server: Server, by_name: dict[str, Host]) -> list[Problem]:
    """The host a server names: it must exist, and should have the server role."""
    if server.host not in by_name:
        return [
            Problem(
                f"servers[{index}].host",
                f"no host named {server.host!r} in hosts" + suggest(server.host, list(by_name)),
            )
        ]
    if "server" not in by_name[server.host].roles:
        return [
            Problem(
                f"servers[{index}].host",
                f"host {server.host!r} runs a server but lacks the server role",
                severity="warning",
            )
        ]
    return []


def _role_problems(inventory: Inventory) -> list[Problem]:
    """No client at all (an error), or a host that runs load and a server (a warning)."""
    problems: list[Problem] = []
    if not inventory.clients:
        problems.append(Problem("hosts", "no host has the client role: nothing would run load"))
    shared = {host.name for host in inventory.shared_hosts}
    for index, host in enumerate(inventory.hosts):
        if host.name in shared:
            problems.append(
                Problem(
                    f"hosts[{index}].roles",
                    f"host {host.name!r} runs both load and a server; the methodology asks for "
                    "separate machines, so its results will be marked",
                    severity="warning",
                )
            )
    return problems


def _repetition_problems(inventory: Inventory) -> list[Problem]:
    """Fewer repetitions than the methodology asks for (a warning)."""
    if inventory.benchmark.repetitions >= 3:
        return []
    return [
        Problem(
            "benchmark.repetitions",
            f"{inventory.benchmark.repetitions} repetition(s) is fewer than the 3 the "
            "methodology asks for; results will be marked",
            severity="warning",
        )
    ]


def _same_machine_problems(inventory: Inventory) -> list[Problem]:
    """Hosts at one address are one machine: refused unless each says ``shares_machine``."""
    problems = []
    for group in inventory.same_machine_groups:
        first = inventory.hosts[group[0]]
        if all(inventory.hosts[index].shares_machine for index in group):
            continue
        for index in group[1:]:
            host = inventory.hosts[index]
            problems.append(
                Problem(
                    f"hosts[{index}].address",
                    f"host {host.name!r} has the same address as {first.name!r} "
                    f"({host.address}): they are one machine; set shares_machine: true on each "
                    "if that is meant (the results are then marked)",
                )
            )
    return problems


def _interval_problems(inventory: Inventory) -> list[Problem]:
    """A repetition of more intervals than agents are built to keep."""
    bench = inventory.benchmark
    intervals = math.ceil(bench.warmup / bench.interval) + math.ceil(
        bench.duration / bench.interval
    )
    if intervals <= MAX_INTERVALS:
        return []
    return [
        Problem(
            "benchmark.duration",
            f"warm-up and measure make {intervals} intervals of "
            f"{format_duration(bench.interval)}; at most {MAX_INTERVALS} per repetition (agents "
            "keep every interval until the repetition ends): raise benchmark.interval or "
            "shorten the repetition",
        )
    ]


def suggest(word: str, choices: list[str]) -> str:
    """A ` (did you mean 'x'?)` hint for a misspelt name, or nothing."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
