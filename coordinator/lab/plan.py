"""The lab's plan: what a lab of a given spec is made of, computed without touching the system.

Everything here is pure (no I/O): the spec and its validation, host names and addresses,
interface names, file paths, the inventory text ``coord lab up`` writes and the state file's
(de)serialization. ``lab.api`` carries the plan out; ``lab.system`` holds the
system calls it needs.

Layout of a lab named ``N`` on subnet ``S`` (documented in docs/lab.md):

    bridge   N-br            root namespace, holds S+1 (the operator's address)
    server   netns N-server  eth0 = S+10, host-side veth N-s, user N-server
    clientK  netns N-clientK eth0 = S+10+K, host-side veth N-cK, user N-clientK
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from coordinator.core.errors import LabError

LAB_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
"""The only addresses a lab may use: RFC 2544's block set aside for benchmarking."""

MAX_CLIENTS = 20
MIN_PREFIX, MAX_PREFIX = 16, 28
BRIDGE_OFFSET = 1
SERVER_OFFSET = 10
SSH_PORT = 22
REDIS_PORT = 6379
STATE_SCHEMA_VERSION = 1
INVENTORY_MARKER = "# Written by `coord lab up`"
USER_COMMENT_PREFIX = "coord lab"
"""GECOS field of every lab user (``coord lab <name>``): how clean-up tells them from others."""
CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1_000

NAME_RE = re.compile(r"[a-z][a-z0-9]{0,7}")
HOST_RE = re.compile(r"server|client([1-9][0-9]?)")
DEFAULT_STATE_ROOT = Path("/var/lib/coord-lab")
HOME_ROOT = Path("/home")
_SSHD_UNSAFE = re.compile(r'["\\%\x00-\x1f\x7f]')
"""What sshd_config cannot carry in a path, even quoted (``%`` starts a token)."""

Role = Literal["client", "server"]
Report = Callable[[str], None]
"""Where the lab's build and teardown send their progress lines."""


@dataclass(frozen=True)
class LabSpec:
    """What the operator asked for; validated on construction (a bad value raises LabError)."""

    name: str = "coord"
    clients: int = 2
    subnet: str = "198.18.0.0/24"
    client_cpu: float | None = None
    state_root: Path = DEFAULT_STATE_ROOT

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.fullmatch(self.name):
            raise LabError(
                f"lab name {self.name!r} is invalid: use a lowercase letter then up to 7 "
                "lowercase letters or digits"
            )
        if (
            isinstance(self.clients, bool)
            or not isinstance(self.clients, int)
            or not (1 <= self.clients <= MAX_CLIENTS)
        ):
            raise LabError(f"clients must be between 1 and {MAX_CLIENTS}, not {self.clients!r}")
        network = _parse_subnet(self.subnet)
        last_host = SERVER_OFFSET + self.clients
        if last_host >= network.num_addresses - 1:
            raise LabError(
                f"subnet {network} is too small for a server and {self.clients} clients "
                f"(hosts use .{SERVER_OFFSET} to .{last_host}); use a larger subnet"
            )
        object.__setattr__(self, "subnet", str(network))
        if self.client_cpu is not None:
            cpu = self.client_cpu
            if (
                isinstance(cpu, bool)
                or not isinstance(cpu, int | float)
                or not (cpu * CPU_PERIOD_US >= MIN_CPU_QUOTA_US and cpu <= 1024)
            ):
                raise LabError(
                    f"client cpu must be a fraction of a core of at least "
                    f"{MIN_CPU_QUOTA_US / CPU_PERIOD_US}, not {cpu!r}"
                )
            object.__setattr__(self, "client_cpu", float(cpu))
        root = Path(self.state_root)
        if not root.is_absolute():
            raise LabError(f"state root must be an absolute path, not {self.state_root}")
        unsafe = _SSHD_UNSAFE.search(str(root))
        if unsafe is not None:
            raise LabError(
                f"state root {str(root)!r} holds {unsafe.group()!r}, which the lab's sshd "
                "configuration cannot name; choose another state root"
            )
        object.__setattr__(self, "state_root", root)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    def describe_difference(self, other: LabSpec) -> str:
        """How ``self`` differs from ``other``, in words (``2 clients, subnet ...``)."""
        parts: list[str] = []
        if self.clients != other.clients:
            parts.append(f"{self.clients} client{'s' if self.clients != 1 else ''}")
        if self.subnet != other.subnet:
            parts.append(f"subnet {self.subnet}")
        if self.client_cpu != other.client_cpu:
            cpu = "no CPU limit" if self.client_cpu is None else f"client cpu {self.client_cpu:g}"
            parts.append(cpu)
        if self.state_root != other.state_root:
            parts.append(f"state root {self.state_root}")
        return ", ".join(parts) or "the same spec"


def _parse_subnet(subnet: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(subnet)
    except ValueError as exc:
        raise LabError(f"subnet {subnet!r} is not an IPv4 network ({exc})") from None
    if not network.subnet_of(LAB_RANGE):
        raise LabError(f"subnet {network} is outside {LAB_RANGE}, the only range a lab may use")
    if not MIN_PREFIX <= network.prefixlen <= MAX_PREFIX:
        raise LabError(
            f"subnet {network} must have a prefix between /{MIN_PREFIX} and /{MAX_PREFIX}"
        )
    return network


@dataclass(frozen=True)
class LabHost:
    """One host of the lab, as the operator reaches it from the root namespace."""

    name: str
    role: Role
    address: str
    namespace: str
    user: str
    key_file: Path


@dataclass(frozen=True)
class LabPaths:
    """Where a lab keeps its files: everything lives under ``<state_root>/<name>``."""

    root: Path

    @classmethod
    def of(cls, name: str, state_root: Path) -> LabPaths:
        return cls(Path(state_root) / name)

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    def key_file(self, host: str) -> Path:
        return self.keys / host

    def host_dir(self, host: str) -> Path:
        return self.root / host

    def sshd_config(self, host: str) -> Path:
        return self.host_dir(host) / "sshd_config"

    def host_key(self, host: str) -> Path:
        return self.host_dir(host) / "ssh_host_ed25519_key"

    def authorized_keys(self, host: str) -> Path:
        return self.host_dir(host) / "authorized_keys"

    def sshd_pidfile(self, host: str) -> Path:
        return self.host_dir(host) / "sshd.pid"

    def sshd_log(self, host: str) -> Path:
        return self.host_dir(host) / "sshd.log"

    @property
    def redis_dir(self) -> Path:
        """Redis's working directory, owned by the redis user: its pid file, log and config
        are written here as that user."""
        return self.host_dir("server") / "redis"

    @property
    def redis_conf(self) -> Path:
        """Redis's own configuration file (mode 600): the password, never on its argv."""
        return self.redis_dir / "redis.conf"

    @property
    def redis_pidfile(self) -> Path:
        return self.redis_dir / "redis.pid"

    @property
    def redis_log(self) -> Path:
        return self.redis_dir / "redis.log"

    @property
    def redis_password(self) -> Path:
        """The password coord reads (root's, mode 600): the inventory's ``password_file``."""
        return self.root / "redis.password"


# --- names ---------------------------------------------------------------------------------


def host_names(clients: int) -> list[str]:
    return ["server", *(f"client{index}" for index in range(1, clients + 1))]


def namespace_name(lab: str, host: str) -> str:
    return f"{lab}-{host}"


def user_name(lab: str, host: str) -> str:
    return f"{lab}-{host}"


def redis_user(lab: str) -> str:
    """The unprivileged account the lab's redis-server runs as (no login, no home of its own)."""
    return f"{lab}-redis"


def home_dir(user: str) -> Path:
    return HOME_ROOT / user


def user_comment(lab: str) -> str:
    return f"{USER_COMMENT_PREFIX} {lab}"


def bridge_name(lab: str) -> str:
    return f"{lab}-br"


def veth_name(lab: str, host: str) -> str:
    """Host-side veth: ``<lab>-s`` or ``<lab>-c<K>``, at most 12 characters (IFNAMSIZ is 16)."""
    match = HOST_RE.fullmatch(host)
    if match is None:
        raise ValueError(f"not a lab host name: {host}")
    return f"{lab}-s" if host == "server" else f"{lab}-c{match.group(1)}"


def cgroup_group(lab: str) -> str:
    return f"{lab}-lab"


def lab_host_of(lab: str, object_name: str) -> str | None:
    """The host a namespace or user name ``<lab>-<host>`` belongs to, if it follows the rule."""
    prefix = f"{lab}-"
    if not object_name.startswith(prefix):
        return None
    host = object_name[len(prefix) :]
    match = HOST_RE.fullmatch(host)
    if match is None or (match.group(1) is not None and int(match.group(1)) > MAX_CLIENTS):
        return None
    return host


def is_lab_veth(lab: str, ifname: str) -> bool:
    match = re.fullmatch(re.escape(lab) + r"-(s|c([1-9][0-9]?))", ifname)
    return match is not None and (match.group(2) is None or int(match.group(2)) <= MAX_CLIENTS)


# --- the plan ------------------------------------------------------------------------------


def host_address(spec: LabSpec, host: str) -> str:
    offset = SERVER_OFFSET if host == "server" else SERVER_OFFSET + int(host[len("client") :])
    return str(spec.network.network_address + offset)


def bridge_address(spec: LabSpec) -> str:
    return str(spec.network.network_address + BRIDGE_OFFSET)


def plan_hosts(spec: LabSpec) -> list[LabHost]:
    paths = LabPaths.of(spec.name, spec.state_root)
    return [
        LabHost(
            name=host,
            role="server" if host == "server" else "client",
            address=host_address(spec, host),
            namespace=namespace_name(spec.name, host),
            user=user_name(spec.name, host),
            key_file=paths.key_file(host),
        )
        for host in host_names(spec.clients)
    ]


def cpu_quota_us(fraction: float) -> int:
    return max(MIN_CPU_QUOTA_US, round(fraction * CPU_PERIOD_US))


def redis_conf_text(password: str) -> str:
    """The lab's redis.conf: only the password (every other setting is on the command line).

    ``password`` must be one token of URL-safe characters (the lab draws it so), which Redis's
    configuration reads as is.
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", password):
        raise ValueError("the lab's Redis password must be URL-safe characters only")
    return f"# Written by `coord lab up`; Redis reads it as its own user.\nrequirepass {password}\n"


def _sshd_path(path: Path) -> str:
    """A path as an sshd_config value: quoted when it holds spaces or ``#`` (state roots may)."""
    text = str(path)
    return text if re.fullmatch(r"[\w./+@:=,-]+", text) else f'"{text}"'


def sshd_config_text(spec: LabSpec, host: LabHost) -> str:
    paths = LabPaths.of(spec.name, spec.state_root)
    return "\n".join(
        [
            f"# sshd of lab host {host.name} ({spec.name}); written by `coord lab up`",
            f"ListenAddress {host.address}",
            f"Port {SSH_PORT}",
            "AddressFamily inet",
            f"HostKey {_sshd_path(paths.host_key(host.name))}",
            f"PidFile {_sshd_path(paths.sshd_pidfile(host.name))}",
            f"AuthorizedKeysFile {_sshd_path(paths.authorized_keys(host.name))}",
            f"AllowUsers {host.user}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            "UsePAM no",
            "StrictModes yes",
            "AllowTcpForwarding local",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PrintMotd no",
            "UseDNS no",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


# --- the inventory -------------------------------------------------------------------------

_PLAIN_SCALAR = re.compile(r"[A-Za-z0-9_./@+-]+")
_YAML_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "~"})


def _yaml_str(value: str) -> str:
    """A YAML scalar for ``value``: bare when it is plainly safe, else JSON-quoted."""
    if _PLAIN_SCALAR.fullmatch(value) and value[0] not in "-@" and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value)


def render_inventory(spec: LabSpec, hosts: Sequence[LabHost]) -> str:
    """The inventory YAML ``lab_up`` writes for ``hosts`` of the lab described by ``spec``."""
    paths = LabPaths.of(spec.name, spec.state_root)
    down = "coord lab down" if spec.name == "coord" else f"coord lab down --name {spec.name}"
    lines = [
        f"{INVENTORY_MARKER} for the lab {spec.name!r} ({spec.subnet}).",
        f"# `{down}` removes the lab and this file with it.",
        "version: 1",
        f"name: {spec.name}-lab",
        "ssh:",
        f"  known_hosts: {_yaml_str(str(paths.known_hosts))}",
        "  host_key_policy: strict",
        "  connect_timeout: 10s",
        "hosts:",
    ]
    for host in hosts:
        lines += [
            f"  - name: {host.name}",
            f"    address: {host.address}",
            f"    port: {SSH_PORT}",
            f"    user: {host.user}",
            f"    key_file: {_yaml_str(str(host.key_file))}",
            "    python: /usr/bin/python3",
            f"    roles: [{host.role}]",
        ]
        if host.role == "client" and spec.client_cpu is not None:
            lines.append(f'    labels: {{cpu_quota: "{spec.client_cpu:g}"}}')
    servers = [host for host in hosts if host.role == "server"]
    lines.append("servers:")
    lines += [
        line
        for host in servers
        for line in (
            "  - name: redis",
            f"    host: {host.name}",
            f"    port: {REDIS_PORT}",
            f"    password_file: {_yaml_str(str(paths.redis_password))}",
        )
    ]
    lines += [
        "benchmark:",
        "  driver: builtin",
        "  repetitions: 3",
        "  warmup: 2s",
        "  duration: 10s",
        "baseline:",
        "  duration: 3s",
        "",
    ]
    return "\n".join(lines)


def is_lab_inventory(text: str, lab: str | None = None) -> bool:
    """Whether ``text`` was written by ``coord lab up`` (for the lab ``lab``, when given)."""
    if lab is None:
        return text.startswith(INVENTORY_MARKER)
    return text.startswith(f"{INVENTORY_MARKER} for the lab {lab!r} ")


# --- the state file ------------------------------------------------------------------------


@dataclass(frozen=True)
class LabState:
    """What ``<state_root>/<name>/state.json`` records (schema version 1)."""

    spec: LabSpec
    hosts: list[LabHost]
    inventories: list[Path] = field(default_factory=list)
    complete: bool = False
    cgroups: dict[str, Path] = field(default_factory=dict)


def state_to_json(state: LabState) -> str:
    spec = state.spec
    document = {
        "schema_version": STATE_SCHEMA_VERSION,
        "complete": state.complete,
        "spec": {
            "name": spec.name,
            "clients": spec.clients,
            "subnet": spec.subnet,
            "client_cpu": spec.client_cpu,
            "state_root": str(spec.state_root),
        },
        "hosts": [
            {
                "name": host.name,
                "role": host.role,
                "address": host.address,
                "namespace": host.namespace,
                "user": host.user,
                "key_file": str(host.key_file),
            }
            for host in state.hosts
        ],
        "inventories": [str(path) for path in state.inventories],
        "cgroups": {host: str(path) for host, path in state.cgroups.items()},
    }
    return json.dumps(document, indent=2) + "\n"


def state_from_json(text: str) -> LabState:
    """Parse a state file; raises LabError (one line) when it is unreadable or unknown."""
    try:
        document = json.loads(text)
        if not isinstance(document, Mapping):
            raise TypeError("not a JSON object")
        version = document.get("schema_version")
        if version != STATE_SCHEMA_VERSION:
            raise LabError(f"unknown lab state schema_version {version!r}")
        raw_spec = document["spec"]
        spec = LabSpec(
            name=str(raw_spec["name"]),
            clients=int(raw_spec["clients"]),
            subnet=str(raw_spec["subnet"]),
            client_cpu=None if raw_spec["client_cpu"] is None else float(raw_spec["client_cpu"]),
            state_root=Path(raw_spec["state_root"]),
        )
        hosts = [_host_from_json(raw) for raw in document["hosts"]]
        return LabState(
            spec=spec,
            hosts=hosts,
            inventories=[Path(str(path)) for path in document.get("inventories", [])],
            complete=bool(document.get("complete", False)),
            cgroups={str(k): Path(str(v)) for k, v in document.get("cgroups", {}).items()},
        )
    except LabError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise LabError(f"lab state file is damaged ({type(exc).__name__}: {exc})") from None


def _host_from_json(raw: Any) -> LabHost:
    role = raw["role"]
    if role not in ("client", "server"):
        raise ValueError(f"unknown role {role!r}")
    return LabHost(
        name=str(raw["name"]),
        role=role,
        address=str(raw["address"]),
        namespace=str(raw["namespace"]),
        user=str(raw["user"]),
        key_file=Path(str(raw["key_file"])),
    )
