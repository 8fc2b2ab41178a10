"""`coord lab ...` as a user types it: exit statuses, one-line errors, and the full cycle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.core.errors import LabError
from coordinator.lab import system as lab_sys
from coordinator.lab.api import LabSpec, lab_status, lab_up

ROOT = Path(__file__).parents[2]
NAME = "clicli"
SUBNET = "198.18.105.0/24"
"""Apart from test_lab.py's labs (198.18.100-104), which another session may have up."""

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]


def coord(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "coordinator.cli", *args]
    if user is not None:
        setpriv = shutil.which("setpriv")
        assert setpriv is not None
        command = [setpriv, f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def test_lab_up_without_root_is_one_line_and_status_1(tmp_path: Path) -> None:
    result = coord("lab", "up", "--name", NAME, "--subnet", SUBNET,
                   "--inventory", str(tmp_path / "lab.yaml"), user="65534")
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        "the lab needs root (namespaces, users, daemons): run it with sudo"
    ]


def test_up_check_status_down_from_the_command_line(tmp_path: Path) -> None:
    inventory = tmp_path / "lab.yaml"
    try:
        up = coord("lab", "up", "--name", NAME, "--subnet", SUBNET, "--clients", "1",
                   "--inventory", str(inventory))
        assert up.returncode == 0, up.stderr
        assert "name: client1" in up.stdout
        check = coord("inventory", "check", str(inventory))
        assert check.returncode == 0, check.stderr
        assert check.stderr == ""
        status = coord("lab", "status", "--name", NAME)
        assert status.returncode == 0, status.stdout
        assert "healthy" in status.stdout
        clash = coord("lab", "up", "--name", NAME, "--subnet", SUBNET, "--clients", "3",
                      "--inventory", str(inventory))
        assert clash.returncode == 1
        assert len(clash.stderr.strip().splitlines()) == 1
        assert "already up with 1 client" in clash.stderr
    finally:
        down = coord("lab", "down", "--name", NAME)
    assert down.returncode == 0, down.stderr
    assert not inventory.exists()
    gone = coord("lab", "status", "--name", NAME)
    assert gone.returncode == 3
    assert f"no lab named {NAME!r} is up" in gone.stdout


def test_a_missing_tool_is_one_line_naming_its_package_and_nothing_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(lab_sys.TOOLS, "coord-no-such-tool", "coord-no-such-package")
    with pytest.raises(LabError) as raised:
        lab_up(LabSpec(name=NAME, subnet=SUBNET, clients=1), tmp_path / "lab.yaml")
    message = str(raised.value)
    assert "\n" not in message
    assert "coord-no-such-tool (coord-no-such-package)" in message
    assert "scripts/install-system-packages" in message
    assert lab_status(NAME) is None
    assert not (tmp_path / "lab.yaml").exists()
