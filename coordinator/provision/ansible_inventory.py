"""A coord inventory as an Ansible inventory (pure: no I/O).

Groups follow the roles (``coord_clients``, ``coord_servers``); every host carries its SSH
settings as Ansible connection variables, and its host-key policy as OpenSSH options, so that
``ansible-playbook`` checks host keys exactly as coord does: against the inventory's
known_hosts, refusing unknown keys under ``strict`` and recording them under ``accept-new``.
Nothing here ever turns host-key checking off. coord reads no ``~/.ssh/config``, and neither
does the export (``-F /dev/null``): everything the connection uses is in the inventory.
Server hosts also carry ``coord_redis_servers``, what the server role configures.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from coordinator.inventory.schema import Host, Inventory, Server

CLIENT_GROUP = "coord_clients"
SERVER_GROUP = "coord_servers"
STRICT_HOST_KEY_CHECKING = {"strict": "yes", "accept-new": "accept-new"}
"""OpenSSH's StrictHostKeyChecking value for each coord host-key policy (never ``no``)."""

HEADER = (
    "# Ansible inventory written by `coord inventory export --format ansible` from {source}.\n"
    "# Regenerate it rather than editing it: the coord inventory is the source.\n"
)


class Literal(str):
    """A value Ansible must take as written, never as a template: an inline password holding
    ``{{`` would otherwise be evaluated. Written with YAML's ``!unsafe`` tag."""


class _ExportDumper(yaml.SafeDumper):
    """The safe dumper, plus ``!unsafe`` for :class:`Literal` values."""


def _represent_literal(dumper: yaml.SafeDumper, value: Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("!unsafe", str(value))


_ExportDumper.add_representer(Literal, _represent_literal)


@dataclass(frozen=True)
class RedisInstance:
    """What the server role needs to know about one server under test on a host."""

    name: str
    port: int
    bind: str
    password_file: str | None
    password_env: str | None
    password: str | None

    def as_vars(self) -> dict[str, Any]:
        """The instance as role variables: only the password source that is set."""
        values: dict[str, Any] = {"name": self.name, "port": self.port, "bind": self.bind}
        for key in ("password_file", "password_env"):
            value = getattr(self, key)
            if value is not None:
                values[key] = value
        if self.password is not None:
            values["password"] = Literal(self.password)
        return values


def ssh_common_args(inventory: Inventory, host: Host) -> str:
    """The OpenSSH options for ``host``: known_hosts file and host-key policy, no ssh_config,
    and only the inventory's key when it names one."""
    options = [
        "-F", "/dev/null",
        "-o", f"UserKnownHostsFile={inventory.ssh.known_hosts}",
        "-o", f"StrictHostKeyChecking={STRICT_HOST_KEY_CHECKING[inventory.ssh.host_key_policy]}",
    ]
    if _key_file(inventory, host) is not None:
        options += ["-o", "IdentitiesOnly=yes"]
    return shlex.join(options)


def host_vars(inventory: Inventory, host: Host) -> dict[str, Any]:
    """Ansible's connection variables for ``host``, plus the Redis instances it serves."""
    values: dict[str, Any] = {
        "ansible_host": host.address,
        "ansible_port": host.port,
        "ansible_connection": "ssh",
        "ansible_host_key_checking": True,
        "ansible_ssh_common_args": ssh_common_args(inventory, host),
        "ansible_ssh_timeout": math.ceil(inventory.ssh.connect_timeout),
        "ansible_python_interpreter": host.python,
    }
    user = host.user or inventory.ssh.user
    if user is not None:
        values["ansible_user"] = user
    key_file = _key_file(inventory, host)
    if key_file is not None:
        values["ansible_ssh_private_key_file"] = key_file
    instances = redis_instances(inventory, host)
    if instances:
        values["coord_redis_servers"] = [instance.as_vars() for instance in instances]
    return values


def redis_instances(inventory: Inventory, host: Host) -> list[RedisInstance]:
    """The servers under test that run on ``host``, bound to their data address."""
    return [_instance(inventory, server) for server in inventory.servers
            if server.host == host.name]


def ansible_inventory(inventory: Inventory) -> dict[str, Any]:
    """The Ansible inventory (the YAML format's structure) of a coord inventory."""
    client_names = {host.name for host in inventory.clients}
    server_names = {host.name for host in inventory.server_hosts}
    return {
        "all": {
            "hosts": {host.name: host_vars(inventory, host) for host in inventory.hosts},
            "vars": {"coord_inventory_name": inventory.name},
            "children": {
                CLIENT_GROUP: {"hosts": {name: None for name in _ordered(inventory, client_names)}},
                SERVER_GROUP: {"hosts": {name: None for name in _ordered(inventory, server_names)}},
            },
        }
    }


def ansible_inventory_yaml(inventory: Inventory, source: str) -> str:
    """The export as the text of a YAML file, with a header naming where it came from."""
    body = yaml.dump(ansible_inventory(inventory), Dumper=_ExportDumper, sort_keys=False,
                     default_flow_style=False)
    return HEADER.format(source=source.replace("\n", " ")) + body


def _key_file(inventory: Inventory, host: Host) -> str | None:
    return _expanded(host.key_file or inventory.ssh.key_file)


def _expanded(path: str | None) -> str | None:
    """``~`` expanded as coord expands it: Ansible's lookups and key options may not."""
    return str(Path(path).expanduser()) if path is not None else None


def _instance(inventory: Inventory, server: Server) -> RedisInstance:
    return RedisInstance(
        name=server.name,
        port=server.port,
        bind=inventory.data_address(server),
        password_file=_expanded(server.password_file),
        password_env=server.password_env,
        password=server.password,
    )


def _ordered(inventory: Inventory, names: set[str]) -> list[str]:
    """``names`` in the inventory's order of hosts (a stable, readable export)."""
    return [host.name for host in inventory.hosts if host.name in names]
