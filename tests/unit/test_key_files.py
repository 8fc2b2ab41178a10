"""A private key that group or others may read is a warning naming the file (OpenSSH refuses
such a key), at `inventory check` and before any command connects."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import RunCoord
from tests.unit.test_inventory_errors import VALID_HEAD


def inventory_with_key(tmp_path: Path, mode: int, *, per_host: bool = False,
                       port: int = 22) -> tuple[Path, Path]:
    key = tmp_path / "id_test"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n")
    key.chmod(mode)
    text = VALID_HEAD
    if per_host:
        text = text.replace("    roles: [client]\n", f"    key_file: {key}\n    roles: [client]\n")
    else:
        text += f"ssh:\n  key_file: {key}\n  connect_timeout: 1s\n"
    text = text.replace("198.18.0.11", "127.0.0.1").replace("    roles: [client]\n",
                                                            f"    port: {port}\n"
                                                            "    roles: [client]\n")
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    return path, key


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_inventory_check_warns_about_an_open_private_key(tmp_path: Path, run_coord: RunCoord,
                                                         mode: int) -> None:
    path, key = inventory_with_key(tmp_path, mode)
    result = run_coord("inventory", "check", str(path))
    assert result.status == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"{path}:15: ssh.key_file: warning: private key {key} is accessible by group or others "
        f"(mode {mode:04o}); OpenSSH refuses such a key: chmod 600 {key}"
    ]


def test_a_host_key_file_is_named_by_its_host(tmp_path: Path, run_coord: RunCoord) -> None:
    path, key = inventory_with_key(tmp_path, 0o644, per_host=True)
    result = run_coord("inventory", "check", str(path))
    assert result.status == 0
    assert f"hosts[1].key_file: warning: private key {key}" in result.stderr


def test_a_private_key_of_mode_600_is_quiet(tmp_path: Path, run_coord: RunCoord) -> None:
    path, _ = inventory_with_key(tmp_path, 0o600)
    result = run_coord("inventory", "check", str(path))
    assert result.status == 0
    assert "warning" not in result.stderr


def test_the_warning_comes_before_connecting(tmp_path: Path, run_coord: RunCoord) -> None:
    with socket.socket() as closed:  # a port on loopback where nothing listens
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    path, key = inventory_with_key(tmp_path, 0o644, port=port)
    result = run_coord("agents", "stop", "-i", str(path), "--hosts", "client1")
    assert result.status == 1
    lines = result.stderr.splitlines()
    warning = next(i for i, line in enumerate(lines) if f"private key {key}" in line)
    failure = next(i for i, line in enumerate(lines) if "client1" in line and i != warning)
    assert warning < failure
