"""``coord provision``: the playbooks in ``playbooks/`` of this package (the source tree's
top-level ``ansible/``) run by ``ansible-playbook`` against the export of a coord inventory, and
what they did to each host.

The export carries each host's SSH settings and host-key policy (see
:mod:`coordinator.provision.ansible_inventory`); the environment set here only keeps Ansible
from reading the operator's configuration files, shares one SSH connection per host among the
playbook's tasks (an OpenSSH master each, in the run's scratch directory, ended when the
playbook is: none is left behind) and turns colours off so that the output can be read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.core.errors import CoordError, FleetError, HostError, UsageError, last_line
from coordinator.inventory.loader import LoadedInventory
from coordinator.provision.ansible_inventory import ansible_inventory_yaml
from coordinator.provision.recap import PlaybookRecap, parse_playbook_output

PLAYBOOK = "site.yml"
EXTRA_NAME = "coord[ansible]"
SSH_MASTER_PERSIST = "30s"
"""An SSH master left idle this long ends by itself (a coord killed before it could end it)."""
SSH_EXIT_TIMEOUT_S = 10.0


class ProvisionError(CoordError):
    """ansible-playbook is missing, or failed before any host's outcome was known."""


@dataclass(frozen=True)
class ProvisionOptions:
    """What to run: which tags, extra variables (``KEY=VALUE`` as ansible's ``-e``), where."""

    tags: Sequence[str] = ()
    skip_tags: Sequence[str] = ()
    extra_vars: Sequence[str] = ()
    playbooks: Path | None = None
    log: Path | None = None


@dataclass(frozen=True)
class ProvisionOutcome:
    """The per-host recap and ansible-playbook's whole output."""

    recap: PlaybookRecap
    output: str = field(repr=False)


def default_playbooks() -> Path:
    """The playbooks shipped in this package (package data of the wheel; the source tree's
    top-level ``ansible/`` is a symlink to the same directory)."""
    return Path(__file__).resolve().parent / "playbooks"


def find_ansible_playbook() -> str:
    """ansible-playbook beside this Python (a virtualenv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("ansible-playbook")
    if found is None:
        raise ProvisionError(
            f"ansible-playbook not found: install the ansible extra (pip install '{EXTRA_NAME}')"
        )
    return found


def ansible_environment(playbooks: Path, control_dir: Path | None = None) -> dict[str, str]:
    """The process environment for ansible-playbook: this directory's ansible.cfg and nothing
    of the operator's, host keys checked, plain output. With ``control_dir``, each host's SSH
    connection is shared by the playbook's tasks (an OpenSSH master per host, its socket in
    that directory): the caller ends the masters after the playbook
    (:func:`stop_ssh_masters`), and each would end by itself :data:`SSH_MASTER_PERSIST` after
    its last task anyway. Without it, every task opens its own connection."""
    environment = dict(os.environ)
    environment.update({
        "ANSIBLE_CONFIG": str(playbooks / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(playbooks / "roles"),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no" if control_dir is None else
        f"-o ControlMaster=auto -o ControlPersist={SSH_MASTER_PERSIST}",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "True",
    })
    if control_dir is not None:
        environment["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(control_dir)
    return environment


def stop_ssh_masters(control_dir: Path) -> None:
    """End every OpenSSH master whose socket is in ``control_dir`` (``ssh -O exit``)."""
    for entry in control_dir.iterdir():
        if entry.is_socket():
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(["ssh", "-S", str(entry), "-O", "exit", "coord-provision"],
                               stdin=subprocess.DEVNULL, capture_output=True, check=False,
                               timeout=SSH_EXIT_TIMEOUT_S)


def provision(loaded: LoadedInventory, options: ProvisionOptions) -> ProvisionOutcome:
    """Run the playbooks on every host of ``loaded``; raise ``FleetError`` naming each host that
    failed or was unreachable (after the run: the others are provisioned all the same)."""
    playbooks = options.playbooks or default_playbooks()
    if not (playbooks / PLAYBOOK).is_file():
        raise UsageError(f"--playbooks: {playbooks} holds no {PLAYBOOK} (give a directory "
                         "with coord's playbooks, such as ansible/ of its source tree)")
    executable = find_ansible_playbook()
    with tempfile.TemporaryDirectory(prefix="coord-provision-") as scratch:
        inventory_file = Path(scratch) / "inventory.yml"
        inventory_file.write_text(ansible_inventory_yaml(loaded.inventory, loaded.source))
        inventory_file.chmod(0o600)
        command = [executable, "-i", str(inventory_file), str(playbooks / PLAYBOOK)]
        for tag in options.tags:
            command += ["--tags", tag]
        for tag in options.skip_tags:
            command += ["--skip-tags", tag]
        for assignment in options.extra_vars:
            command += ["-e", assignment]
        try:
            completed = subprocess.run(
                command, cwd=playbooks, env=ansible_environment(playbooks, Path(scratch)),
                check=False,
                stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
            )
        finally:
            stop_ssh_masters(Path(scratch))
    output = completed.stdout + completed.stderr
    if options.log is not None:
        options.log.write_text(output)
    recap = parse_playbook_output(completed.stdout)
    failed = recap.failed
    if failed:
        raise ProvisionFailed(recap, output, {
            host.host: HostError(host.host, host.failure or "failed: see ansible-playbook's output")
            for host in failed
        })
    if completed.returncode != 0:
        reason = last_line(completed.stderr) or last_line(completed.stdout)
        raise ProvisionError(
            f"ansible-playbook exited with status {completed.returncode}: {reason}")
    return ProvisionOutcome(recap, output)


class ProvisionFailed(FleetError):
    """One or more hosts failed or were unreachable; the recap of the others is kept."""

    def __init__(self, recap: PlaybookRecap, output: str, failures: dict[str, HostError]) -> None:
        super().__init__(failures)
        self.recap = recap
        self.output = output
