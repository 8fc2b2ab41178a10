"""coord installed from its wheel, as the README's `pip install .` does, deploys and runs.

Needs root. Builds the wheel, installs it into a fresh virtual environment in tmp_path (with
the project's dependencies, from the pip cache), and runs that environment's `coord deploy`
and a one-repetition `coord run` on a lab (``cwhl``: one client and a server), with the working
directory outside the source tree and no PYTHONPATH: nothing of the tree can leak in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.lab.api import LabSpec, LabStatus
from coordinator.provision.playbook import ansible_environment
from coordinator.remote.bundle import _digest_files, _source_files
from coordinator.results import load_results
from tests.helpers import module_lab
from tests.wheel import ROOT, build_wheel

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

SPEC = LabSpec(name="cwhl", clients=1, subnet="198.18.140.0/24")
AGENT_SOURCE_PROBE = """\
import json, sys
from coordinator.remote.bundle import _agent_dir, _digest_files, _source_files
root = _agent_dir()
files = _source_files(root)
print(json.dumps({"root": str(root), "digest": _digest_files(root, files),
                  "files": [path.relative_to(root).as_posix() for path in files]}))
"""
"""Run by the installed Python: where bundle.py finds the agent, and what it hashes."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(SPEC, tmp_path_factory.mktemp("wheel-lab"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the fresh environment it is installed in)."""
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)],
                   check=True, capture_output=True, timeout=600, env=clean_env(work))
    return wheel, venv


def clean_env(home: Path) -> dict[str, str]:
    """The environment without PYTHONPATH; coord's bundle cache in ``home`` (so the bundle is
    built from the installed agent, not taken from a build of the source tree), pip's cache
    reused."""
    pip_cache = os.environ.get("PIP_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip")
    env = {key: value for key, value in os.environ.items()
           if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    return {**env, "XDG_CACHE_HOME": str(home / "cache"), "PIP_CACHE_DIR": pip_cache}


def run_installed(venv: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], cwd=cwd,
                          env=clean_env(cwd), capture_output=True, text=True, timeout=300,
                          check=False)


def test_bundle_hashes_the_installed_agent_without_caches(installed: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    wheel, venv = installed
    probe = run_installed(venv, tmp_path, "python", "-c", AGENT_SOURCE_PROBE)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    root = Path(found["root"])
    assert root.is_relative_to(venv) and "site-packages" in root.parts
    assert not root.is_relative_to(ROOT)
    assert any(root.rglob("__pycache__/*.pyc"))  # pip compiled them; the bundle leaves them out
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if name.startswith("agent/")]
        archive.extractall(unpacked, members)
    expected_files = _source_files(unpacked / "agent")
    assert found["files"] == [path.relative_to(unpacked / "agent").as_posix()
                              for path in expected_files]
    assert "drivers/builtin.py" in found["files"]
    assert found["digest"] == _digest_files(unpacked / "agent", expected_files)


def test_the_installed_coord_deploys_and_runs(installed: tuple[Path, Path], lab: LabStatus,
                                              tmp_path: Path) -> None:
    _, venv = installed
    inventory = str(lab.inventory_path)
    deploy = run_installed(venv, tmp_path, "coord", "deploy", "-i", inventory)
    assert deploy.returncode == 0, deploy.stderr
    out = tmp_path / "results"
    run = run_installed(venv, tmp_path, "coord", "run", "-i", inventory, "--out", str(out),
                        "--repetitions", "1", "--warmup", "1s", "--duration", "1s",
                        "--set", "benchmark.builtin.connections=2",
                        "--set", "benchmark.builtin.processes=1",
                        "--set", "baseline.duration=1s", "--set", "baseline.iterations=1")
    assert run.returncode == 0, run.stderr
    document = load_results(out / "results.json")
    assert document.status == "complete"
    assert [repetition.count > 0 for repetition in document.repetitions] == [True]


PLAYBOOK_PROBE = """\
import json
from coordinator.provision.playbook import PLAYBOOK, default_playbooks
found = default_playbooks()
print(json.dumps({"dir": str(found), "playbook": str(found / PLAYBOOK),
                  "files": sorted(p.relative_to(found).as_posix()
                                  for p in found.rglob("*") if p.is_file())}))
"""
"""Run by the installed Python: where `coord provision` looks for its playbooks by default."""


def test_the_installed_coord_finds_its_playbooks(installed: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    _, venv = installed
    probe = run_installed(venv, tmp_path, "python", "-c", PLAYBOOK_PROBE)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert Path(found["dir"]).is_relative_to(venv) and "site-packages" in Path(found["dir"]).parts
    assert Path(found["playbook"]).is_file()
    source = sorted(path.relative_to(ROOT / "ansible").as_posix()
                    for path in (ROOT / "ansible").rglob("*") if path.is_file())
    assert found["files"] == source
    dev_playbook = Path(sys.executable).parent / "ansible-playbook"
    if dev_playbook.exists():  # the installed roles are complete: the playbook resolves them
        inventory = tmp_path / "hosts.yml"
        inventory.write_text("all:\n  children:\n    coord_clients: {hosts: {c: }}\n"
                             "    coord_servers: {hosts: {s: }}\n")
        playbooks = Path(found["dir"])
        checked = subprocess.run(
            [str(dev_playbook), "-i", str(inventory), "--syntax-check", found["playbook"]],
            cwd=playbooks, env=ansible_environment(playbooks), capture_output=True, text=True,
            check=False, timeout=300)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    helped = run_installed(venv, tmp_path, "coord", "provision", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--playbooks" in helped.stdout
