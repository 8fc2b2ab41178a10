"""Warnings about SSH private keys that OpenSSH itself would refuse to use.

OpenSSH ignores a private key that its group or others may access ("UNPROTECTED PRIVATE KEY
FILE"); paramiko uses it silently. coord says so, naming the file, whenever an inventory is
loaded (``inventory check`` and before any command connects), so the key is fixed once rather
than leaked or refused later by another tool.
"""

from __future__ import annotations

import stat
from pathlib import Path

from coordinator.core.errors import Problem
from coordinator.inventory.schema import Inventory


def key_file_warnings(inventory: Inventory) -> list[Problem]:
    """One warning per private key file (host or ``ssh`` default) open to group or others."""
    warnings: list[Problem] = []
    seen: set[Path] = set()
    for index, host in enumerate(inventory.hosts):
        if host.key_file is not None:
            where, name = f"hosts[{index}].key_file", host.key_file
        elif inventory.ssh.key_file is not None:
            where, name = "ssh.key_file", inventory.ssh.key_file
        else:
            continue
        path = Path(name).expanduser()
        if path in seen:
            continue
        seen.add(path)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue  # a missing key is reported by the connection that needs it
        if mode & 0o077:
            warnings.append(Problem(
                where,
                f"private key {path} is accessible by group or others (mode {mode:04o}); "
                f"OpenSSH refuses such a key: chmod 600 {path}",
                severity="warning",
            ))
    return warnings
