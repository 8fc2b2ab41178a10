"""The lab's pure plan: spec validation, names, addresses, the inventory and the state file."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from coordinator.core.errors import LabError
from coordinator.inventory.loader import parse_inventory
from coordinator.lab.config_files import (
    is_lab_inventory,
    redis_conf_text,
    render_inventory,
    sshd_config_text,
)
from coordinator.lab.plan import (
    LabPaths,
    LabSpec,
    is_lab_veth,
    lab_host_of,
    plan_hosts,
    redis_user,
    veth_name,
)
from coordinator.lab.state import LabState, state_from_json, state_to_json


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "Coord"}, "lab name 'Coord' is invalid"),
        ({"name": "coordlab99"}, "is invalid"),
        ({"name": "co-rd"}, "is invalid"),
        ({"clients": 0}, "between 1 and 20"),
        ({"clients": 21}, "between 1 and 20"),
        ({"subnet": "10.0.0.0/24"}, "outside 198.18.0.0/15"),
        ({"subnet": "198.20.0.0/24"}, "outside 198.18.0.0/15"),
        ({"subnet": "198.18.0.5/24"}, "not an IPv4 network"),
        ({"subnet": "198.18.0.0/29"}, "between /16 and /28"),
        ({"subnet": "198.18.0.0/28", "clients": 5}, "too small"),
        ({"client_cpu": 0.0}, "at least 0.01"),
        ({"client_cpu": -1.0}, "at least 0.01"),
        ({"server_cpu": 0.0}, "server cpu must be a fraction of a core of at least 0.01"),
        ({"server_cpu": True}, "server cpu must be"),
        ({"state_root": Path("relative")}, "absolute"),
        ({"state_root": Path("/srv/100%")}, "sshd configuration cannot name"),
        ({"state_root": Path('/srv/"lab"')}, "sshd configuration cannot name"),
    ],
)
def test_bad_specs_are_refused_in_one_line(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(LabError) as raised:
        LabSpec(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_largest_spec_fits_every_limit() -> None:
    spec = LabSpec(name="abcdefgh", clients=20, subnet="198.19.255.0/24", client_cpu=1.5)
    hosts = plan_hosts(spec)
    assert [host.name for host in hosts][-1] == "client20"
    assert hosts[-1].address == "198.19.255.30"
    assert max(len(veth_name(spec.name, host.name)) for host in hosts) <= 15
    assert LabSpec(subnet="198.18.0.0/28", clients=4).clients == 4


def test_the_layout_is_deterministic() -> None:
    spec = LabSpec(name="coord", clients=2, subnet="198.18.7.0/24")
    assert [
        (h.name, h.role, h.address, h.namespace, h.user, str(h.key_file)) for h in plan_hosts(spec)
    ] == [
        (
            "server",
            "server",
            "198.18.7.10",
            "coord-server",
            "coord-server",
            "/var/lib/coord-lab/coord/keys/server",
        ),
        (
            "client1",
            "client",
            "198.18.7.11",
            "coord-client1",
            "coord-client1",
            "/var/lib/coord-lab/coord/keys/client1",
        ),
        (
            "client2",
            "client",
            "198.18.7.12",
            "coord-client2",
            "coord-client2",
            "/var/lib/coord-lab/coord/keys/client2",
        ),
    ]
    assert [veth_name("coord", h) for h in ("server", "client1", "client12")] == [
        "coord-s",
        "coord-c1",
        "coord-c12",
    ]


def test_naming_convention_matches_only_the_labs_own_objects() -> None:
    assert lab_host_of("coord", "coord-server") == "server"
    assert lab_host_of("coord", "coord-client7") == "client7"
    for other in ("coordx-server", "coord-client0", "coord-client21", "coord-br", "coord-"):
        assert lab_host_of("coord", other) is None
    assert is_lab_veth("coord", "coord-s") and is_lab_veth("coord", "coord-c20")
    assert not is_lab_veth("coord", "coord-c21") and not is_lab_veth("coord", "coord-br")
    assert not is_lab_veth("coord", "coordx-s")


def test_sshd_config_listens_on_the_lab_address_only() -> None:
    spec = LabSpec()
    text = sshd_config_text(spec, plan_hosts(spec)[1])
    assert "ListenAddress 198.18.0.11\n" in text
    for line in (
        "UsePAM no",
        "PasswordAuthentication no",
        "AllowUsers coord-client1",
        "PidFile /var/lib/coord-lab/coord/client1/sshd.pid",
        "AuthorizedKeysFile /var/lib/coord-lab/coord/client1/authorized_keys",
    ):
        assert f"{line}\n" in text


@pytest.mark.parametrize("client_cpu", [None, 0.5])
def test_the_inventory_is_valid_and_labels_the_cpu_quota(client_cpu: float | None) -> None:
    spec = LabSpec(name="demo", clients=2, client_cpu=client_cpu)
    text = render_inventory(spec, plan_hosts(spec))
    assert is_lab_inventory(text, "demo") and not is_lab_inventory(text, "coord")
    assert "coord lab down --name demo" in text.splitlines()[1]
    loaded = parse_inventory(text)
    assert loaded.warnings == []
    inventory = loaded.inventory
    assert inventory.name == "demo-lab"
    assert inventory.ssh.known_hosts == "/var/lib/coord-lab/demo/known_hosts"
    assert inventory.ssh.host_key_policy == "strict"
    assert [host.roles for host in inventory.hosts] == [["server"], ["client"], ["client"]]
    expected = {} if client_cpu is None else {"cpu_quota": "0.5"}
    assert [host.labels for host in inventory.clients] == [expected, expected]
    assert inventory.host("server").labels == {}
    limited = LabSpec(name="demo", clients=1, client_cpu=client_cpu, server_cpu=0.2)
    limited_inventory = parse_inventory(render_inventory(limited, plan_hosts(limited))).inventory
    assert limited_inventory.host("server").labels == {"cpu_quota": "0.2"}
    assert [host.labels for host in limited_inventory.clients] == [expected]
    assert [(s.name, s.host, s.port) for s in inventory.servers] == [("redis", "server", 6379)]
    server = inventory.servers[0]
    assert (server.password, server.password_env) == (None, None)
    assert server.password_file == "/var/lib/coord-lab/demo/redis.password"


def test_redis_runs_as_its_own_user_and_reads_its_password_from_a_file() -> None:
    paths = LabPaths.of("demo", Path("/var/lib/coord-lab"))
    assert redis_user("demo") == "demo-redis"
    assert {paths.redis_conf.parent, paths.redis_pidfile.parent, paths.redis_log.parent} == {
        paths.redis_dir
    }
    assert paths.redis_password.parent == paths.root
    assert redis_conf_text("Ab-9_z").splitlines()[1:] == ["requirepass Ab-9_z"]
    for unsafe in ("", "two words", 'quo"te', "new\nline"):
        with pytest.raises(ValueError, match="URL-safe"):
            redis_conf_text(unsafe)


def test_odd_paths_are_quoted_in_the_inventory() -> None:
    spec = LabSpec(state_root=Path("/srv/lab: #1"))
    document = yaml.safe_load(render_inventory(spec, plan_hosts(spec)))
    assert document["ssh"]["known_hosts"] == "/srv/lab: #1/coord/known_hosts"
    assert document["hosts"][0]["key_file"] == "/srv/lab: #1/coord/keys/server"


def test_odd_paths_are_quoted_in_the_sshd_config() -> None:
    spec = LabSpec(state_root=Path("/srv/lab: #1"))
    text = sshd_config_text(spec, plan_hosts(spec)[0])
    assert 'HostKey "/srv/lab: #1/coord/server/ssh_host_ed25519_key"\n' in text


def test_the_state_file_round_trips_and_rejects_what_it_does_not_know() -> None:
    spec = LabSpec(name="demo", clients=1, subnet="198.18.9.0/24", client_cpu=0.25)
    state = LabState(
        spec=spec,
        hosts=plan_hosts(spec),
        inventories=[Path("/tmp/a.yaml")],
        complete=True,
        cgroups={"client1": Path("/sys/fs/cgroup/cpu/demo-lab/client1")},
    )
    assert state_from_json(state_to_json(state)) == state
    limited = replace(state, spec=replace(spec, server_cpu=0.5),
                      cgroups={"server": Path("/sys/fs/cgroup/demo-lab/server")})
    assert state_from_json(state_to_json(limited)) == limited
    older = json.loads(state_to_json(state))
    del older["spec"]["server_cpu"]  # a state written before --server-cpu existed
    assert state_from_json(json.dumps(older)) == state
    assert "server cpu 0.5" in limited.spec.describe_difference(spec)
    with pytest.raises(LabError, match="unknown lab state schema_version 99"):
        state_from_json(state_to_json(state).replace('"schema_version": 1', '"schema_version": 99'))
    with pytest.raises(LabError, match="damaged"):
        state_from_json('{"schema_version": 1}')
    with pytest.raises(LabError, match="damaged"):
        state_from_json("{not json")
