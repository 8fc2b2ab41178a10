"""The lab's state: the state file ``<state_root>/<name>/state.json`` (its model and
(de)serialization) and :class:`LabStatus`, a lab as ``lab_status`` finds it.

Pure (no I/O); ``lab.system`` reads and writes the file, ``lab.api`` fills the status, and
readers of a status (the inventory summary) need not import the lab's I/O to name its type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator.core.errors import LabError
from coordinator.lab.plan import LabHost, LabSpec

STATE_SCHEMA_VERSION = 1


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
            "server_cpu": spec.server_cpu,
            "state_root": str(spec.state_root),
            "tls": spec.tls,
            "cluster": spec.cluster,
            "model_server": spec.model_server,
            "model_workers": spec.model_workers,
            "model_threads": spec.model_threads,
            "model_intra_op_threads": spec.model_intra_op_threads,
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
            server_cpu=(None if raw_spec.get("server_cpu") is None
                        else float(raw_spec["server_cpu"])),
            tls=bool(raw_spec.get("tls", False)),
            cluster=int(raw_spec.get("cluster", 0)),
            model_server=bool(raw_spec.get("model_server", False)),
            model_workers=int(raw_spec.get("model_workers", 2)),
            model_threads=int(raw_spec.get("model_threads", 1)),
            model_intra_op_threads=int(raw_spec.get("model_intra_op_threads", 1)),
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


@dataclass(frozen=True)
class LabStatus:
    """A lab as found on the system. ``healthy`` when it is complete and nothing is wrong."""

    spec: LabSpec
    hosts: list[LabHost]
    inventory_path: Path
    known_hosts: Path
    processes: dict[str, int]
    """Host name -> number of live processes in its namespace."""
    sshd: dict[str, bool] = field(default_factory=dict)
    """Host name -> its sshd is alive and listening on the host's lab address."""
    redis: bool = False
    """The server's redis-server answers PING on its lab address."""
    model_server: bool = False
    """With ``--model-server``: it answers ``GET /health`` on the server's lab address."""
    cgroups: dict[str, Path] = field(default_factory=dict)
    """Host name -> its CPU cgroup (clients with ``client_cpu``, the server with
    ``server_cpu``)."""
    inventories: list[Path] = field(default_factory=list)
    """Every inventory file ``lab_up`` wrote for this lab (``lab_down`` removes them)."""
    complete: bool = False
    """The build finished (a crash midway leaves ``complete`` false)."""
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.complete and not self.problems
