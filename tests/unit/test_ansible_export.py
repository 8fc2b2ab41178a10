"""The Ansible export of a coord inventory: groups per role, SSH settings per host, host keys
always checked, and ansible-inventory reading it back as coord meant."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from coordinator.inventory.loader import load_inventory, parse_inventory
from coordinator.provision.ansible_inventory import (
    CLIENT_GROUP,
    SERVER_GROUP,
    ansible_inventory,
    ansible_inventory_yaml,
)
from tests.conftest import RunCoord

ROOT = Path(__file__).resolve().parents[2]
CLOUD = ROOT / "inventory" / "cloud.yaml"
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"
ANSIBLE = Path(sys.executable).parent / "ansible"

LAB_LIKE = """
version: 1
name: lab
ssh: {known_hosts: /state/known_hosts, host_key_policy: strict, connect_timeout: 2500ms}
hosts:
  - {name: server, address: 198.18.0.10, port: 2222, user: srv, key_file: /keys/server,
     roles: [server], python: /opt/py/bin/python3}
  - {name: client1, address: 198.18.0.11, user: c1, roles: [client]}
  - {name: both, address: 198.18.0.12, roles: [client, server]}
servers:
  - {name: redis, host: server, port: 6390, address: 10.0.0.10, password_file: /state/pw}
  - {name: other, host: both, password_env: REDIS_PW}
"""


def exported(text: str) -> dict[str, object]:
    return ansible_inventory(parse_inventory(text, "lab.yaml").inventory)


def test_groups_follow_the_roles_and_every_host_has_its_ssh_settings() -> None:
    document = exported(LAB_LIKE)["all"]
    assert isinstance(document, dict)
    assert list(document["children"][CLIENT_GROUP]["hosts"]) == ["client1", "both"]
    assert list(document["children"][SERVER_GROUP]["hosts"]) == ["server", "both"]
    server = document["hosts"]["server"]
    assert server["ansible_host"] == "198.18.0.10"
    assert server["ansible_port"] == 2222
    assert server["ansible_user"] == "srv"
    assert server["ansible_ssh_private_key_file"] == "/keys/server"
    assert server["ansible_python_interpreter"] == "/opt/py/bin/python3"
    assert server["ansible_ssh_timeout"] == 3
    assert server["ansible_host_key_checking"] is True
    assert shlex.split(server["ansible_ssh_common_args"]) == [
        "-F", "/dev/null", "-o", "UserKnownHostsFile=/state/known_hosts",
        "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes"]
    assert "ansible_user" not in document["hosts"]["both"]
    assert "IdentitiesOnly" not in document["hosts"]["client1"]["ansible_ssh_common_args"]


def test_server_hosts_carry_their_redis_instances_bound_to_the_data_address() -> None:
    hosts = exported(LAB_LIKE)["all"]["hosts"]  # type: ignore[index]
    assert hosts["server"]["coord_redis_servers"] == [
        {"name": "redis", "port": 6390, "bind": "10.0.0.10", "password_file": "/state/pw"}]
    assert hosts["both"]["coord_redis_servers"] == [
        {"name": "other", "port": 6379, "bind": "198.18.0.12", "password_env": "REDIS_PW"}]
    assert "coord_redis_servers" not in hosts["client1"]


@given(policy=st.sampled_from(["strict", "accept-new"]),
       known_hosts=st.text(st.characters(min_codepoint=33, max_codepoint=126,
                                         blacklist_characters="\"'\\"), min_size=1, max_size=30))
def test_host_key_checking_is_never_turned_off(policy: str, known_hosts: str) -> None:
    text = LAB_LIKE.replace("/state/known_hosts", json.dumps(known_hosts)).replace(
        "host_key_policy: strict", f"host_key_policy: {policy}")
    for values in exported(text)["all"]["hosts"].values():  # type: ignore[index]
        options = shlex.split(values["ansible_ssh_common_args"])
        assert f"UserKnownHostsFile={known_hosts}" in options
        expected = "yes" if policy == "strict" else "accept-new"
        assert f"StrictHostKeyChecking={expected}" in options
        assert values["ansible_host_key_checking"] is True


def test_the_yaml_export_reads_back_and_names_its_source() -> None:
    loaded = load_inventory(CLOUD)
    text = ansible_inventory_yaml(loaded.inventory, str(CLOUD))
    assert text.startswith("# Ansible inventory written by `coord inventory export")
    assert "password: !unsafe 'change-me'" in text
    loader = type("Loader", (yaml.SafeLoader,), {})
    loader.add_constructor("!unsafe", lambda load, node: load.construct_scalar(node))
    assert yaml.load(text, Loader=loader) == ansible_inventory(loaded.inventory)  # noqa: S506


def test_an_inline_password_is_never_a_template(tmp_path: Path) -> None:
    template = 'x{{ lookup("env", "HOME") }}'
    text = LAB_LIKE.replace("password_env: REDIS_PW", f"password: '{template}'")
    inventory = parse_inventory(text, "lab.yaml").inventory
    target = tmp_path / "hosts.yml"
    target.write_text(ansible_inventory_yaml(inventory, "lab.yaml"))
    if not ANSIBLE.exists():
        pytest.skip("the ansible extra is not installed")
    shown = subprocess.run(  # debug runs on the controller: no connection to the host
        [str(ANSIBLE), "both", "-i", str(target), "-m", "ansible.builtin.debug",
         "-a", "var=coord_redis_servers[0].password"],
        capture_output=True, text=True, check=True, env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
    assert json.dumps(template) in shown.stdout, shown.stdout


@pytest.mark.skipif(not ANSIBLE_INVENTORY.exists(), reason="the ansible extra is not installed")
def test_ansible_inventory_accepts_the_export(run_coord: RunCoord, tmp_path: Path) -> None:
    target = tmp_path / "hosts.yml"
    result = run_coord("inventory", "export", "-i", str(CLOUD), "--format", "ansible", str(target))
    assert result.status == 0, result.stderr
    assert target.stat().st_mode & 0o777 == 0o600
    listed = subprocess.run([str(ANSIBLE_INVENTORY), "-i", str(target), "--list"],
                            capture_output=True, text=True, check=True)
    document = json.loads(listed.stdout)
    assert document[CLIENT_GROUP]["hosts"] == ["load-1", "load-2", "load-3"]
    assert document[SERVER_GROUP]["hosts"] == ["redis-1"]
    load_1 = document["_meta"]["hostvars"]["load-1"]
    assert load_1["ansible_host"] == "203.0.113.21"
    assert load_1["ansible_user"] == "admin"
    assert load_1["ansible_ssh_private_key_file"] == str(Path("~/.ssh/coord-bench").expanduser())
    assert "StrictHostKeyChecking=accept-new" in load_1["ansible_ssh_common_args"]


def test_export_refuses_an_invalid_inventory_in_one_line(run_coord: RunCoord,
                                                         tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nhosts: []\nservers: []\n")
    result = run_coord("inventory", "export", "-i", str(broken), "--format", "ansible",
                       str(tmp_path / "out.yml"))
    assert result.status == 2
    assert not (tmp_path / "out.yml").exists()
