"""Connection options of the builtin driver, pure parts: the target's fields in the spec and
the inventory, the handshake a new connection sends, the TLS context and its errors, and the
lab's ``--tls`` / ``--cluster`` plan."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from agent.drivers import memtier_command, redis_benchmark_command
from agent.drivers.errors import DriverError
from agent.drivers.resp import encode_command
from agent.drivers.resp_handshake import handshake
from agent.drivers.resp_tls import client_context, server_name
from agent.drivers.spec import Target, parse_spec
from coordinator.core.errors import LabError
from coordinator.inventory.loader import parse_inventory
from coordinator.lab.certs import make_certificates
from coordinator.lab.config_files import render_inventory
from coordinator.lab.plan import LabSpec, plan_hosts
from coordinator.lab.state import LabState, state_from_json, state_to_json
from coordinator.run.loadspec import load_spec
from tests.unit.test_load_spec import spec_with
from tests.unit.test_memtier_command import PARAMS as MEMTIER_PARAMS
from tests.unit.test_redis_benchmark_command import params as redis_benchmark_params

PASSWORD = "pw"


def target(**fields: Any) -> Target:
    return parse_spec(spec_with("target", {
        "address": "198.18.0.10", "port": 6379, "password": None, "username": None,
        "tls": None, **fields})).target


def test_db_protocol_and_cluster_are_optional_and_sent_only_when_set() -> None:
    plain = target()
    assert (plain.db, plain.protocol, plain.cluster) == (0, 2, False)
    assert set(plain.to_json()) == {"address", "port", "password", "username", "tls",
                                    "source_address"}
    chosen = target(db=3, protocol=3)
    assert (chosen.db, chosen.protocol) == (3, 3)
    assert parse_spec(spec_with("target", chosen.to_json())).target == chosen
    assert target(cluster=True).to_json()["cluster"] is True


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"protocol": 4}, "spec.target.protocol must be at most 3"),
        ({"protocol": 1}, "spec.target.protocol must be at least 2"),
        ({"db": -1}, "spec.target.db must be at least 0"),
        ({"cluster": "yes"}, "spec.target.cluster must be true or false"),
        ({"cluster": True, "db": 2}, "spec.target.db must be 0 for a cluster"),
    ],
)
def test_bad_connection_options_are_one_config_line(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(DriverError) as refused:
        target(**fields)
    assert refused.value.kind == "config"
    assert message in refused.value.message


def test_the_handshake_authenticates_first_then_switches_protocol_then_selects() -> None:
    assert handshake(target(), ping=True).commands == ("PING",)
    assert handshake(target(), ping=False).payload == b""
    full = handshake(target(password=PASSWORD, username="bench", protocol=3, db=5), ping=True)
    assert full.commands == ("AUTH", "HELLO", "SELECT", "PING")
    assert full.payload == (encode_command("AUTH", "bench", "pw") + encode_command("HELLO", 3)
                            + encode_command("SELECT", 5) + encode_command("PING"))
    assert handshake(target(password=PASSWORD), ping=False).commands == ("AUTH",)


def test_the_inventory_carries_the_options_to_the_spec() -> None:
    text = """
version: 1
hosts:
  - {name: server, address: 198.18.0.10, roles: [server]}
  - {name: client1, address: 198.18.0.11, roles: [client]}
servers:
  - name: redis
    host: server
    username: bench
    db: 2
    protocol: 3
    tls: {ca_file: /ca.crt, server_name: redis.example, verify: true}
"""
    inventory = parse_inventory(text).inventory
    sent = json.loads(load_spec(inventory, password=PASSWORD))["target"]
    assert (sent["db"], sent["protocol"], "cluster" in sent) == (2, 3, False)
    assert sent["tls"]["server_name"] == "redis.example"
    parsed = parse_spec(json.dumps({**json.loads(load_spec(inventory, password=PASSWORD))}))
    assert (parsed.target.username, parsed.target.db, parsed.target.protocol) == ("bench", 2, 3)


def test_the_tls_context_verifies_by_default_and_not_when_told(tmp_path: Path) -> None:
    made = make_certificates("demo", "198.18.0.10", "redis.demo.lab")
    (tmp_path / "ca.crt").write_bytes(made.ca_cert)
    (tmp_path / "client.crt").write_bytes(made.client_cert)
    (tmp_path / "client.key").write_bytes(made.client_key)
    verified = client_context({"ca_file": str(tmp_path / "ca.crt"),
                               "cert_file": str(tmp_path / "client.crt"),
                               "key_file": str(tmp_path / "client.key"), "verify": True})
    assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname
    unverified = client_context({"verify": False})
    assert unverified.verify_mode == ssl.CERT_NONE and not unverified.check_hostname
    assert server_name({"server_name": "redis.demo.lab"}, "198.18.0.10") == "redis.demo.lab"
    assert server_name({}, "198.18.0.10") == "198.18.0.10"


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"ca_file": "/nonexistent/ca.crt"}, "tls.ca_file /nonexistent/ca.crt"),
        ({"cert_file": "/nonexistent/c.crt", "verify": False}, "tls.cert_file /nonexistent"),
        ({"key_file": "/k.key", "verify": False}, "tls.key_file needs tls.cert_file"),
        ({"verify": "no"}, "tls.verify must be true or false"),
        ({"sni": "x"}, "unknown field(s): sni"),
    ],
)
def test_a_bad_tls_option_is_one_config_line(tls: dict[str, Any], message: str) -> None:
    with pytest.raises(DriverError) as refused:
        client_context(tls)
    assert refused.value.kind == "config"
    assert message in refused.value.message


def test_the_lab_inventory_targets_tls_or_the_cluster() -> None:
    tls = LabSpec(name="demo", clients=1, tls=True)
    server = parse_inventory(render_inventory(tls, plan_hosts(tls))).inventory.servers[0]
    assert server.port == 6380
    assert server.tls is not None
    assert server.tls.ca_file == "/var/lib/coord-lab/demo/tls/ca.crt"
    assert server.tls.cert_file == "/var/lib/coord-lab/demo/tls/client.crt"
    cluster = LabSpec(name="demo", clients=1, cluster=3)
    server = parse_inventory(render_inventory(cluster, plan_hosts(cluster))).inventory.servers[0]
    assert (server.name, server.port, server.cluster, server.tls) == ("cluster", 7000, True, None)
    for spec in (tls, cluster):
        state = LabState(spec=spec, hosts=plan_hosts(spec), inventories=[])
        assert state_from_json(state_to_json(state)).spec == spec
    assert LabSpec(name="demo", tls=True).describe_difference(LabSpec(name="demo")) == "TLS"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cluster": 2}, "cluster must be 0 or between 3 and 16"),
        ({"cluster": 17}, "cluster must be 0 or between 3 and 16"),
        ({"cluster": 3, "tls": True}, "--cluster and --tls together are not supported"),
    ],
)
def test_bad_lab_cluster_options_are_one_line(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(LabError) as refused:
        LabSpec(**kwargs)
    assert message in str(refused.value)


def test_the_external_tools_refuse_what_only_the_builtin_driver_implements() -> None:
    assert target().builtin_only() == []
    chosen = target(db=2, protocol=3)
    assert chosen.builtin_only() == ["db", "protocol"]
    with pytest.raises(DriverError) as refused:
        redis_benchmark_command.command_line(
            redis_benchmark_command.parse_params(redis_benchmark_params()), chosen)
    assert "servers[].db, protocol: only the builtin driver" in refused.value.message
    with pytest.raises(DriverError) as refused:
        memtier_command.command_line(memtier_command.parse_params(dict(MEMTIER_PARAMS)),
                                     target(cluster=True), "/tmp/h", "/tmp/j.json")
    assert "servers[].cluster: only the builtin driver" in refused.value.message
