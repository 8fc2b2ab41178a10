"""Building agent bundles with real pip and real wheels, and deploying them to lab hosts.

The build tests need the package index (once per module; later builds reuse the wheels) and
the host's bare ``/usr/bin/python3`` as the target interpreter. The deploy tests build the
lab ``cbund`` (198.18.111.0/24: a server and one client) once and always tear it down.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath

import pytest
import rpyc

import agent
from coordinator.core.errors import BundleError
from coordinator.inventory.loader import load_inventory
from coordinator.inventory.schema import Inventory
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.remote import bundle as bundle_module
from coordinator.remote.bundle import Bundle, build_bundle
from coordinator.remote.bundle_ship import ensure_bundle
from coordinator.remote.interpreter import (
    AGENT_REQUIREMENTS,
    PROBE_SCRIPT,
    Interpreter,
    parse_probe,
    probe_interpreter,
)
from coordinator.remote.ssh import SSHHost
from tests.helpers import module_lab

SYSTEM_PYTHON = Path("/usr/bin/python3")
NAME = "cbund"
SUBNET = "198.18.111.0/24"
IMPORTS = ("import rpyc, rpyc.utils.server, psutil, hdrh.histogram, hdrh.log, hiredis, "
           "httptools, agent")
CHECK_IMPORTS = (
    f"{IMPORTS}; import json, sys; "
    "print(json.dumps({'rpyc': rpyc.__version__, 'psutil': psutil.__file__, "
    "'hdrh': hdrh.histogram.__file__, 'hiredis': hiredis.__file__, "
    "'httptools': httptools.__file__, "
    "'agent': agent.__file__, 'cpu': psutil.cpu_count()}))"
)

pytestmark = pytest.mark.skipif(
    not SYSTEM_PYTHON.exists() or not sys.platform.startswith("linux"),
    reason="needs Linux and /usr/bin/python3",
)
needs_lab = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]


@pytest.fixture(scope="module")
def interpreter() -> Interpreter:
    """The bare system Python: what a lab host (or a plain Debian host) runs the agent with."""
    output = subprocess.run(
        [str(SYSTEM_PYTHON), "-I", "-c", PROBE_SCRIPT],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return parse_probe(output)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bundle-cache")


@pytest.fixture(scope="module")
def built(interpreter: Interpreter, cache_root: Path) -> Bundle:
    started = time.monotonic()
    bundle = build_bundle(interpreter, cache_root, host="local")
    print(f"\ncold build: {time.monotonic() - started:.2f}s, {bundle.size} bytes")
    assert not bundle.from_cache
    return bundle


def wheel_dir(cache_root: Path) -> Path:
    (directory,) = (cache_root / "wheels").iterdir()
    return directory


def unpack(archive: Path, target: Path) -> Path:
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(target, filter="data")
    return target


def test_a_second_build_is_cached_and_calls_no_pip(
    built: Bundle, interpreter: Interpreter, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pip(*args: object, **kwargs: object) -> None:
        raise AssertionError("pip was called for a cached bundle")

    monkeypatch.setattr(bundle_module, "_pip_download", no_pip)
    started = time.monotonic()
    again = build_bundle(interpreter, cache_root, host="local")
    print(f"warm build: {time.monotonic() - started:.4f}s")
    assert again.from_cache
    assert (again.hash, again.archive, again.size) == (built.hash, built.archive, built.size)


def test_builds_are_deterministic(
    built: Bundle, interpreter: Interpreter, cache_root: Path, tmp_path: Path
) -> None:
    """Another cache, wheels from a wheelhouse, other mtimes: the same hash and archive."""
    wheelhouse = tmp_path / "wheelhouse"
    shutil.copytree(wheel_dir(cache_root), wheelhouse)
    for wheel in wheelhouse.iterdir():
        os.utime(wheel, (1, 1))
    other = build_bundle(interpreter, tmp_path / "cache", wheelhouse, host="local")
    assert not other.from_cache
    assert other.hash == built.hash
    assert other.archive.read_bytes() == built.archive.read_bytes()


def test_the_archive_is_normalized(built: Bundle, interpreter: Interpreter) -> None:
    with tarfile.open(built.archive, "r:gz") as tar:
        members = tar.getmembers()
    names = [member.name for member in members]
    assert names == sorted(names)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {
        (bundle_module.ARCHIVE_MTIME, 0, 0, "", "")
    }
    assert all(member.isfile() or member.isdir() for member in members)
    assert "agent/__init__.py" in names
    for package in ("rpyc", "psutil", "hdrh", "hiredis", "httptools"):
        assert f"site/{package}/__init__.py" in names
    assert not any(name.startswith(("site/redis/", "site/async_timeout/")) for name in names)
    assert any(name.startswith("site/pyhdrh.") and name.endswith(".so") for name in names)
    compiled = [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    if bundle_module.compiles_bytecode_for(interpreter):  # the system Python is coord's here
        assert "agent/__pycache__/service.cpython-311.pyc" in names
        assert all(PurePosixPath(name).parent.name == "__pycache__" for name in compiled
                   if name.endswith(".pyc"))
    else:
        assert not compiled
    manifest = json.loads((built.archive.parent / "bundle.json").read_text())
    assert manifest["hash"] == built.hash
    assert manifest["requirements"] == [str(req) for req in built.requirements]


def test_the_unpacked_bundle_imports_with_the_bare_system_python(
    built: Bundle, tmp_path: Path
) -> None:
    root = unpack(built.archive, tmp_path / "bundle")
    assert bundle_module.tree_hash(root) == built.hash
    shipped = sorted(root.rglob("*"))
    result = subprocess.run(
        [str(SYSTEM_PYTHON), "-S", "-c", CHECK_IMPORTS],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
        env={"PYTHONPATH": f"{root}:{root / 'site'}", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["rpyc"] == rpyc.__version__
    for module in ("psutil", "hdrh", "hiredis", "httptools", "agent"):
        assert found[module].startswith(str(root)), (module, found[module])
    if "agent/__pycache__" in {p.relative_to(root).as_posix() for p in shipped}:
        assert sorted(root.rglob("*")) == shipped  # the shipped bytecode served: none written


def test_an_empty_wheelhouse_names_host_interpreter_and_package(
    interpreter: Interpreter, tmp_path: Path
) -> None:
    wheelhouse = tmp_path / "empty"
    wheelhouse.mkdir()
    with pytest.raises(BundleError) as caught:
        build_bundle(interpreter, tmp_path / "cache", wheelhouse, host="client3")
    message = str(caught.value)
    assert caught.value.host == "client3"
    assert message.startswith("client3: no wheel of ")
    assert f"for {interpreter.abi} on {interpreter.machine} ({interpreter.describe()})" in message
    assert f"in wheelhouse {wheelhouse}" in message
    named = [req for req in AGENT_REQUIREMENTS if
             f"no wheel of {req.name} {req.version} " in message]  # fmt: skip
    assert len(named) == 1, message


def test_a_foreign_architecture_names_the_binary_package(
    built: Bundle, interpreter: Interpreter, cache_root: Path, tmp_path: Path
) -> None:
    """Pure-Python wheels fit any machine; the first compiled one is what is missing."""
    foreign = replace(interpreter, machine="riscv64")
    with pytest.raises(BundleError) as caught:
        build_bundle(foreign, tmp_path / "cache", wheel_dir(cache_root), host="client9")
    message = str(caught.value)
    compiled = {"hdrhistogram", "hiredis", "psutil"}
    assert any(
        f"client9: no wheel of {req.name} {req.version} for {interpreter.abi} on riscv64 "
        in message
        for req in built.requirements
        if req.name in compiled
    ), message


# --- on lab hosts -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    spec = LabSpec(name=NAME, clients=1, subnet=SUBNET)
    yield from module_lab(spec, tmp_path_factory.mktemp(NAME))


@pytest.fixture(scope="module")
def inventory(lab: LabStatus) -> Inventory:
    return load_inventory(lab.inventory_path).inventory


@pytest.mark.usefixtures("built", "lab")  # the cold build first, whichever tests run (-m lab)
class TestOnLabHosts:
    pytestmark = needs_lab

    def test_deploy_uploads_once_then_transfers_nothing(
        self, inventory: Inventory, cache_root: Path
    ) -> None:
        cache_dir = inventory.agent.cache_dir
        with SSHHost(inventory.host("client1"), inventory.ssh) as ssh:
            started = time.monotonic()
            interpreter = probe_interpreter(ssh)
            bundle = build_bundle(interpreter, cache_root, host=ssh.name)
            first = ensure_bundle(ssh, bundle, cache_dir)
            cold = time.monotonic() - started
            assert not first.cached
            assert first.bytes_uploaded == bundle.size == ssh.bytes_uploaded
            assert first.remote_dir == f"/home/{ssh.user}/.cache/coord/bundles/{bundle.hash}"
            started = time.monotonic()
            second = ensure_bundle(ssh, bundle, cache_dir)
            warm = time.monotonic() - started
            assert second.cached and second.bytes_uploaded == 0
            assert second.remote_dir == first.remote_dir
            assert ssh.bytes_uploaded == bundle.size
            listing = ssh.run(["ls", "-A", posixpath.dirname(first.remote_dir)])[0].split()
            assert listing == [bundle.hash]  # no archive or work directory left behind
            assert ssh.run(["cat", f"{first.remote_dir}/.complete"])[0] == bundle.hash + "\n"
        print(f"\nfirst deploy (probe, build, upload, unpack): {cold:.3f}s; warm: {warm:.4f}s")
        with SSHHost(inventory.host("client1"), inventory.ssh) as ssh:
            started = time.monotonic()
            third = ensure_bundle(ssh, bundle, cache_dir)
            print(f"warm ensure_bundle on a new connection: {time.monotonic() - started:.4f}s")
            assert third.cached and ssh.bytes_uploaded == 0

    def test_the_bundle_imports_with_the_hosts_bare_python(
        self, inventory: Inventory, cache_root: Path
    ) -> None:
        with SSHHost(inventory.host("server"), inventory.ssh) as ssh:
            bundle = build_bundle(probe_interpreter(ssh), cache_root, host=ssh.name)
            deployed = ensure_bundle(ssh, bundle, inventory.agent.cache_dir)
            for flags in ([], ["-S"]):  # -S: nothing from the system's dist-packages
                stdout, _ = ssh.run(
                    ["env", f"PYTHONPATH={deployed.pythonpath}", "/usr/bin/python3", *flags,
                     "-c", CHECK_IMPORTS]
                )  # fmt: skip
                found = json.loads(stdout)
                for module in ("psutil", "hdrh", "hiredis", "httptools", "agent"):
                    assert found[module].startswith(deployed.remote_dir + "/"), found
                assert found["rpyc"] == rpyc.__version__

    def test_old_bundles_are_pruned(
        self, inventory: Inventory, interpreter: Interpreter, cache_root: Path, tmp_path: Path
    ) -> None:
        agent_source = Path(agent.__file__).parent
        hashes = []
        with SSHHost(inventory.host("client1"), inventory.ssh) as ssh:
            cache_dir = f"~/prune-{tmp_path.name}"
            for version in range(3):
                agent_dir = tmp_path / f"agent{version}"
                shutil.copytree(agent_source, agent_dir)
                (agent_dir / "variant.py").write_text(f"VARIANT = {version}\n")
                bundle = build_bundle(interpreter, cache_root, host=ssh.name, agent_dir=agent_dir)
                assert not ensure_bundle(ssh, bundle, cache_dir).cached
                hashes.append(bundle.hash)
            assert len(set(hashes)) == 3
            bundles_dir = f"/home/{ssh.user}/prune-{tmp_path.name}/bundles"
            assert sorted(ssh.run(["ls", "-A", bundles_dir])[0].split()) == sorted(hashes[1:])
            ssh.run(["rm", "-rf", posixpath.dirname(bundles_dir)])

    def test_hostile_cache_dir_is_only_a_path(self, inventory: Inventory, built: Bundle) -> None:
        with SSHHost(inventory.host("client1"), inventory.ssh) as ssh:
            cache_dir = "~/odd $(touch pwned) 'dir'"
            deployed = ensure_bundle(ssh, built, cache_dir)
            home = f"/home/{ssh.user}"
            assert deployed.remote_dir.startswith(f"{home}/odd $(touch pwned) 'dir'/bundles/")
            assert "pwned" not in ssh.run(["ls", "-A", home])[0].splitlines()
            ssh.run(["rm", "-rf", f"{home}/odd $(touch pwned) 'dir'"])
