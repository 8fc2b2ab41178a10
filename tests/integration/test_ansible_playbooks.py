"""Every playbook in ansible/ passes ansible-playbook --syntax-check, and ansible-lint (offline,
the production profile) when it is installed (`scripts/install-python-env --dev` installs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.provision.playbook import ansible_environment, default_playbooks

BIN = Path(sys.executable).parent
PLAYBOOKS = sorted(default_playbooks().glob("*.yml"))


def test_there_are_playbooks() -> None:
    assert [path.name for path in PLAYBOOKS] == ["site.yml"]


@pytest.mark.skipif(not (BIN / "ansible-playbook").exists(),
                    reason="the ansible extra is not installed")
@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda path: path.name)
def test_syntax_check(playbook: Path, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    coord_clients: {hosts: {c: }}\n"
                         "    coord_servers: {hosts: {s: }}\n")
    checked = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), "--syntax-check", str(playbook)],
        cwd=playbook.parent, env=ansible_environment(playbook.parent),
        capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.skipif(not (BIN / "ansible-lint").exists(), reason="ansible-lint is not installed")
def test_ansible_lint() -> None:
    linted = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "--nocolor", *[p.name for p in PLAYBOOKS]],
        cwd=default_playbooks(), capture_output=True, text=True, check=False)
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.skipif(not (BIN / "ansible-playbook").exists(),
                    reason="the ansible extra is not installed")
@pytest.mark.skipif(Path("/run/systemd/system").is_dir(),
                    reason="this machine runs systemd: nothing to skip")
def test_the_server_role_skips_its_systemd_tasks_without_systemd(tmp_path: Path) -> None:
    """This machine has no systemd as PID 1 (a container): the server role's systemd tasks
    are skipped with one clear message, not failed. Run on this machine (connection local) in
    check mode, so that nothing is written even if the role did try."""
    playbooks = default_playbooks()
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    coord_clients: {hosts: {}}\n"
        "    coord_servers:\n      hosts:\n        here:\n          ansible_connection: local\n"
        f"          ansible_python_interpreter: {sys.executable}\n"
        "          coord_redis_servers: [{name: sdcheck, port: 6399, bind: 127.0.0.1, "
        "password: unused}]\n")
    ran = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), "--check", "--tags", "redis",
         "-e", "ansible_become=false", str(playbooks / "site.yml")],
        cwd=playbooks, env=ansible_environment(playbooks), capture_output=True, text=True,
        check=False, timeout=300)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output
    assert "here has no systemd (PID 1 is " in output, output
    assert "coord_redis_service=user" in output
    assert "failed=0" in output
    assert not Path("/etc/redis/coord-sdcheck.conf").exists()


NAMESPACE = "coord-ans15"


@pytest.mark.skipif(not (BIN / "ansible-playbook").exists(),
                    reason="the ansible extra is not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace needs root")
@pytest.mark.parametrize("in_namespace", [True, False], ids=["namespace", "machine"])
def test_the_tuning_role_skips_machine_wide_settings_in_a_network_namespace(
        tmp_path: Path, in_namespace: bool) -> None:
    """A host that is a network namespace of this machine (as the lab's are) must not set the
    CPU governor or transparent huge pages: they are machine-wide. Check mode, connection
    local: nothing is written either way; the namespace is removed after."""
    playbooks = default_playbooks()
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    coord_servers: {hosts: {}}\n"
        "    coord_clients:\n      hosts:\n        here:\n          ansible_connection: local\n"
        f"          ansible_python_interpreter: {sys.executable}\n")
    command = [str(BIN / "ansible-playbook"), "-i", str(inventory), "--check", "--tags",
               "tuning", "-e", "ansible_become=false", "-e", "coord_tune_thp_off=true",
               "-e", "coord_tune_cpu_governor=performance", str(playbooks / "site.yml")]
    if in_namespace:
        subprocess.run(["ip", "netns", "add", NAMESPACE], check=True)
        command = ["ip", "netns", "exec", NAMESPACE, *command]
    try:
        ran = subprocess.run(command, cwd=playbooks, env=ansible_environment(playbooks),
                             capture_output=True, text=True, check=False, timeout=300)
    finally:
        if in_namespace:
            subprocess.run(["ip", "netns", "delete", NAMESPACE], check=True)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output
    assert "failed=0" in output
    message = "here is a network namespace of a bigger machine"
    assert (message in output) == in_namespace, output
