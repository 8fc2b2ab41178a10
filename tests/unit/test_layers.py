"""Layering rules a module's imports must keep: readers of a type do not pull in its I/O.

Each check imports one module in a fresh interpreter and lists what came with it, so a
module imported earlier by another test cannot hide a dependency.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def modules_loaded_by(module: str) -> set[str]:
    """Every module a fresh interpreter holds after ``import module``."""
    script = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(result.stdout))


LAB_IO = {
    "coordinator.lab.api",
    "coordinator.lab.build",
    "coordinator.lab.teardown",
    "coordinator.lab.system",
    "coordinator.lab.processes",
    "coordinator.lab.network",
    "coordinator.lab.cgroups",
}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("coordinator.inventory.summary", LAB_IO),
        ("coordinator.run.view", {"coordinator.remote.agent_link", "rpyc"}),
        ("coordinator.lab.plan", LAB_IO),
        ("coordinator.lab.config_files", LAB_IO),
        ("coordinator.lab.state", LAB_IO),
        ("coordinator.remote.interpreter", {"paramiko", "fabric"}),
        ("coordinator.inventory.checks", {"coordinator.remote.ssh", "paramiko"}),
    ],
)
def test_a_module_does_not_import_io_it_does_not_use(module: str, forbidden: set[str]) -> None:
    assert modules_loaded_by(module) & forbidden == set()
