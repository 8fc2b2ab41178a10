"""Every playbook in ansible/ passes ansible-playbook --syntax-check, and ansible-lint (offline,
the production profile) when it is installed (`scripts/install-python-env --dev` installs it)."""

from __future__ import annotations

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
