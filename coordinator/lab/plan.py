"""The lab's plan: what a lab of a given spec is made of, computed without touching the system.

Everything here is pure (no I/O): the spec and its validation, host names and addresses,
interface names and file paths. The files it implies are rendered by ``lab.config_files``
and the state file by ``lab.state``; ``lab.api`` carries the plan out; ``lab.system`` holds
the system calls it needs.

Layout of a lab named ``N`` on subnet ``S`` (documented in docs/lab.md):

    bridge   N-br            root namespace, holds S+1 (the operator's address)
    server   netns N-server  eth0 = S+10, host-side veth N-s, user N-server
    clientK  netns N-clientK eth0 = S+10+K, host-side veth N-cK, user N-clientK
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from coordinator.core.errors import LabError

LAB_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
"""The only addresses a lab may use: RFC 2544's block set aside for benchmarking."""

MAX_CLIENTS = 20
MIN_PREFIX, MAX_PREFIX = 16, 28
BRIDGE_OFFSET = 1
SERVER_OFFSET = 10
SSH_PORT = 22
REDIS_PORT = 6379
REDIS_TLS_PORT = 6380
"""With ``--tls``, redis-server also listens with TLS here (the inventory's target)."""
CLUSTER_PORT = 7000
"""With ``--cluster N``, the cluster's nodes listen on CLUSTER_PORT .. CLUSTER_PORT + N - 1."""
MIN_CLUSTER, MAX_CLUSTER = 3, 16
MODEL_SERVER_PORT = 8000
"""With ``--model-server``, the model server (Gunicorn + Flask) listens here on the server host."""
FRAUD_CUSTOMERS = 1_000
"""Customer ids whose reference data the model server's setup loads into the lab's Redis."""
MAX_MODEL_SETTING = 64
"""Upper bound of the model server's workers, threads and intra-op threads."""
"""Redis Cluster needs at least three primaries (``redis-cli --cluster create``)."""
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
    server_cpu: float | None = None
    """CPU quota of the server host (its sshd and redis-server), in cores: Redis made the
    bottleneck on purpose."""
    tls: bool = False
    """redis-server also listens with TLS (REDIS_TLS_PORT); a CA and certificates are made."""
    cluster: int = 0
    """Redis Cluster nodes (primaries) on the server host, beside the lab's redis-server."""
    model_server: bool = False
    """The model server on the server host (docs/model-serving.md), as the server host's user."""
    model_workers: int = 2
    """Gunicorn worker processes of the model server."""
    model_threads: int = 1
    """Threads per Gunicorn worker (more than 1: Gunicorn's gthread workers)."""
    model_intra_op_threads: int = 1
    """onnxruntime's intra-op threads per model session (one per model per worker)."""

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
        for role in ("client", "server"):
            cpu = getattr(self, f"{role}_cpu")
            if cpu is None:
                continue
            if (
                isinstance(cpu, bool)
                or not isinstance(cpu, int | float)
                or not (cpu * CPU_PERIOD_US >= MIN_CPU_QUOTA_US and cpu <= 1024)
            ):
                raise LabError(
                    f"{role} cpu must be a fraction of a core of at least "
                    f"{MIN_CPU_QUOTA_US / CPU_PERIOD_US}, not {cpu!r}"
                )
            object.__setattr__(self, f"{role}_cpu", float(cpu))
        if isinstance(self.cluster, bool) or not isinstance(self.cluster, int) or (
            self.cluster and not MIN_CLUSTER <= self.cluster <= MAX_CLUSTER
        ):
            raise LabError(f"cluster must be 0 or between {MIN_CLUSTER} and {MAX_CLUSTER} "
                           f"nodes, not {self.cluster!r}")
        for setting in ("model_workers", "model_threads", "model_intra_op_threads"):
            value = getattr(self, setting)
            if isinstance(value, bool) or not isinstance(value, int) or not (
                1 <= value <= MAX_MODEL_SETTING
            ):
                raise LabError(f"{setting.replace('_', ' ')} must be between 1 and "
                               f"{MAX_MODEL_SETTING}, not {value!r}")
        if self.cluster and self.tls:
            raise LabError("--cluster and --tls together are not supported: the cluster's "
                           "nodes speak plain TCP")
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

    def cpu_quota(self, role: Role) -> float | None:
        """The CPU quota of a host of ``role``, in cores (None: unlimited)."""
        return self.client_cpu if role == "client" else self.server_cpu

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
        if self.server_cpu != other.server_cpu:
            parts.append("no server CPU limit" if self.server_cpu is None
                         else f"server cpu {self.server_cpu:g}")
        if self.state_root != other.state_root:
            parts.append(f"state root {self.state_root}")
        if self.tls != other.tls:
            parts.append("TLS" if self.tls else "no TLS")
        if self.cluster != other.cluster:
            parts.append(f"a cluster of {self.cluster}" if self.cluster else "no cluster")
        if self.model_server != other.model_server:
            parts.append("a model server" if self.model_server else "no model server")
        model = (self.model_workers, self.model_threads, self.model_intra_op_threads)
        if model != (other.model_workers, other.model_threads, other.model_intra_op_threads):
            parts.append("model server workers/threads/intra-op threads "
                         f"{'/'.join(str(value) for value in model)}")
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
    def tls_dir(self) -> Path:
        """With ``--tls``: ca.crt, client.crt and client.key, readable by every lab user (the
        load runs as the client hosts' users); the server's key is in :attr:`redis_dir`."""
        return self.root / "tls"

    def cluster_dir(self, port: int) -> Path:
        """A cluster node's working directory (its nodes.conf, pid file and log)."""
        return self.redis_dir / f"cluster-{port}"

    @property
    def model_dir(self) -> Path:
        """With ``--model-server``: its models, log, pid file and a copy of the Redis password,
        owned by the server host's user (mode 700)."""
        return self.host_dir("server") / "model-server"

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


def cluster_ports(spec: LabSpec) -> list[int]:
    """The cluster nodes' ports (none without ``--cluster``)."""
    return [CLUSTER_PORT + index for index in range(spec.cluster)]


def tls_server_name(lab: str) -> str:
    """The DNS name in the lab's server certificate (beside its address), for SNI."""
    return f"redis.{lab}.lab"


def cpu_quota_us(fraction: float) -> int:
    return max(MIN_CPU_QUOTA_US, round(fraction * CPU_PERIOD_US))
