"""The lab's configuration files, as text: redis.conf, each host's sshd_config, the inventory.

Pure (no I/O), like :mod:`coordinator.lab.plan` whose names and paths they use; ``lab.build``
writes them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from coordinator.lab.plan import (
    CLUSTER_PORT,
    FRAUD_CUSTOMERS,
    INVENTORY_MARKER,
    MODEL_SERVER_PORT,
    REDIS_PORT,
    REDIS_TLS_PORT,
    SSH_PORT,
    LabHost,
    LabPaths,
    LabSpec,
)


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
        quota = spec.cpu_quota(host.role)
        if quota is not None:
            lines.append(f'    labels: {{cpu_quota: "{quota:g}"}}')
    servers = [host for host in hosts if host.role == "server"]
    lines.append("servers:")
    for host in servers:
        port = CLUSTER_PORT if spec.cluster else REDIS_TLS_PORT if spec.tls else REDIS_PORT
        lines += [
            f"  - name: {'cluster' if spec.cluster else 'redis'}",
            f"    host: {host.name}",
            f"    port: {port}",
            f"    password_file: {_yaml_str(str(paths.redis_password))}",
        ]
        if spec.cluster:
            lines.append("    cluster: true")
        if spec.tls:
            lines += [
                "    tls:",
                f"      ca_file: {_yaml_str(str(paths.tls_dir / 'ca.crt'))}",
                f"      cert_file: {_yaml_str(str(paths.tls_dir / 'client.crt'))}",
                f"      key_file: {_yaml_str(str(paths.tls_dir / 'client.key'))}",
            ]
    lines += [
        "benchmark:",
        "  driver: builtin",
        "  repetitions: 3",
        "  warmup: 2s",
        "  duration: 10s",
        "  builtin:",
        "    keyspace: 10000  # each load process encodes 2 requests per key before it starts",
        "baseline:",
        "  duration: 3s",
        "",
    ]
    return "\n".join(lines)


def model_inventory_path(inventory: Path) -> Path:
    """Where ``--model-server`` writes the model server's inventory, beside the lab's."""
    return inventory.with_name(f"{inventory.stem}-model{inventory.suffix or '.yaml'}")


def lab_inventories(spec: LabSpec, inventory: Path) -> list[Path]:
    """The inventories ``lab up`` writes for ``spec``, the lab's own last."""
    return [model_inventory_path(inventory), inventory] if spec.model_server else [inventory]


FRAUD_TEMPLATE_TRANSACTION = ", ".join(["0.5"] * 30)


def render_model_inventory(spec: LabSpec, hosts: Sequence[LabHost]) -> str:
    """The inventory of the model server (``--model-server``): the lab's hosts, one server of
    kind http, and the http driver scoring fraud through the common REST shape.

    A second file rather than a second ``servers[]`` entry in the lab's inventory: a run has
    one target, whose kind its driver speaks (docs/model-serving.md).
    """
    text = render_inventory(spec, hosts)
    head = text[: text.index("servers:\n")]
    server = next(host for host in hosts if host.role == "server")
    return head + "\n".join([
        "servers:",
        "  - name: model",
        f"    host: {server.name}",
        f"    port: {MODEL_SERVER_PORT}",
        "    kind: http",
        "benchmark:",
        "  driver: http",
        "  repetitions: 3",
        "  warmup: 2s",
        "  duration: 10s",
        "  http:",
        "    connections: 8",
        f"    keyspace: {FRAUD_CUSTOMERS}",
        "    requests:",
        "      - name: fraud",
        "        method: POST",
        "        path: /predict",
        "        body: {json: {customer_id: \"{rand_int}\", "
        f"transaction: [{FRAUD_TEMPLATE_TRANSACTION}]}}}}",
        "        expect_status: 200",
        "        json_path: score",
        "baseline:",
        "  duration: 3s",
        "",
    ])


def is_lab_inventory(text: str, lab: str | None = None) -> bool:
    """Whether ``text`` was written by ``coord lab up`` (for the lab ``lab``, when given)."""
    if lab is None:
        return text.startswith(INVENTORY_MARKER)
    return text.startswith(f"{INVENTORY_MARKER} for the lab {lab!r} ")


# --- the state file ------------------------------------------------------------------------
