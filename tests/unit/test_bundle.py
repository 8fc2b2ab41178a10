"""Pure parts of the agent bundle: the probe, wheel platform tags, requirements, the hash."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.markers import default_environment
from packaging.requirements import Requirement as PackagingRequirement
from packaging.utils import canonicalize_name

from coordinator.core.errors import BundleError
from coordinator.remote import bundle
from coordinator.remote.bundle import _load_cached, build_bundle, tree_hash
from coordinator.remote.interpreter import (
    AGENT_DISTRIBUTIONS,
    AGENT_REQUIREMENTS,
    EXCLUDED_DEPENDENCIES,
    MIN_PYTHON,
    PROBE_SCRIPT,
    Interpreter,
    compatible_platform_tags,
    parse_probe,
)


def probe_output(**changes: object) -> str:
    """What PROBE_SCRIPT prints on Debian 12's python3, with ``changes`` applied."""
    document: dict[str, object] = {
        "probe": 1,
        "executable": "/usr/bin/python3",
        "version": [3, 11, 2],
        "implementation": "cpython",
        "abi": "cp311",
        "machine": "x86_64",
        "bits": 64,
        "libc": ["glibc", "2.36"],
        "platform": "linux",
        "supported": True,
    }
    document.update(changes)
    return json.dumps(document) + "\n"


DEBIAN = parse_probe(probe_output())


# --- the probe -------------------------------------------------------------------------------


def test_probe_script_is_one_line_of_python() -> None:
    assert "\n" not in PROBE_SCRIPT
    compile(PROBE_SCRIPT, "<probe>", "exec")


def test_probe_script_describes_the_interpreter_that_runs_it() -> None:
    output = subprocess.run(
        [sys.executable, "-I", "-c", PROBE_SCRIPT],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    interpreter = parse_probe(output)
    assert interpreter.version == tuple(sys.version_info[:3])
    assert interpreter.implementation == sys.implementation.name
    assert interpreter.abi == f"cp{sys.version_info[0]}{sys.version_info[1]}{sys.abiflags}"
    assert interpreter.machine == os.uname().machine
    assert interpreter.platform == sys.platform
    assert interpreter.executable == sys.executable
    confstr = os.confstr("CS_GNU_LIBC_VERSION")
    assert confstr is not None
    assert interpreter.glibc == tuple(int(part) for part in confstr.split()[1].split(".")[:2])
    assert json.loads(output)["supported"] is True


def test_parse_probe_of_debian_python() -> None:
    expected = Interpreter(
        executable="/usr/bin/python3",
        version=(3, 11, 2),
        implementation="cpython",
        abi="cp311",
        machine="x86_64",
        glibc=(2, 36),
        platform="linux",
    )
    assert expected == DEBIAN
    assert DEBIAN.supported
    assert DEBIAN.python_version == "3.11"
    assert DEBIAN.version_text == "3.11.2"
    assert DEBIAN.tag == "cp311-x86_64-glibc2.36"
    assert DEBIAN.describe() == "python /usr/bin/python3 3.11.2"


def test_parse_probe_ignores_lines_before_the_document() -> None:
    assert parse_probe("Welcome to host!\n" + probe_output()) == DEBIAN


@pytest.mark.parametrize(
    ("machine", "bits", "expected"),
    [
        ("x86_64", 64, "x86_64"),
        ("aarch64", 64, "aarch64"),
        ("x86_64", 32, "i686"),
        ("aarch64", 32, "armv7l"),
        ("AMD64", 64, "x86_64"),
        ("arm64", 64, "aarch64"),
    ],
)
def test_parse_probe_normalizes_the_machine(machine: str, bits: int, expected: str) -> None:
    assert parse_probe(probe_output(machine=machine, bits=bits)).machine == expected


def test_parse_probe_without_glibc() -> None:
    interpreter = parse_probe(probe_output(libc=["", ""]))
    assert interpreter.glibc is None
    assert interpreter.tag == "cp311-x86_64-nonglibc"


def test_old_or_foreign_interpreters_are_not_supported() -> None:
    assert not parse_probe(probe_output(version=[3, 9, 2], abi="cp39")).supported
    assert not parse_probe(probe_output(implementation="pypy")).supported
    assert not parse_probe(probe_output(platform="darwin")).supported
    assert parse_probe(probe_output(version=[3, 10, 0], abi="cp310")).supported
    assert MIN_PYTHON == (3, 10)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not JSON"),
        ("bash: python3: command not found", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (probe_output(probe=2), "unknown probe format"),
        (probe_output(version=[3, 11]), "three integers"),
        (probe_output(version=[3, True, 2]), "three integers"),
        (probe_output(bits=True), "'bits'"),
        (probe_output(abi="cpython-311"), "not like cp311"),
        (json.dumps({"probe": 1, "version": [3, 11, 2]}), "lacks 'machine'"),
    ],
)
def test_parse_probe_rejects_what_the_probe_never_prints(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_probe(text)


# --- platform tags ---------------------------------------------------------------------------


def test_platform_tags_for_debian_x86_64() -> None:
    tags = compatible_platform_tags(DEBIAN)
    assert tags[0] == "manylinux_2_36_x86_64"
    assert tags[-1] == "linux_x86_64"
    for legacy, pep600 in [
        ("manylinux2014_x86_64", "manylinux_2_17_x86_64"),
        ("manylinux2010_x86_64", "manylinux_2_12_x86_64"),
        ("manylinux1_x86_64", "manylinux_2_5_x86_64"),
    ]:
        assert tags.index(legacy) == tags.index(pep600) + 1
    assert "manylinux_2_4_x86_64" not in tags


def test_platform_tags_for_aarch64_stop_at_manylinux2014() -> None:
    tags = compatible_platform_tags(replace(DEBIAN, machine="aarch64", glibc=(2, 31)))
    assert tags == [
        *(f"manylinux_2_{minor}_aarch64" for minor in range(31, 17, -1)),
        "manylinux_2_17_aarch64",
        "manylinux2014_aarch64",
        "linux_aarch64",
    ]


def test_platform_tags_without_glibc() -> None:
    assert compatible_platform_tags(replace(DEBIAN, glibc=None)) == ["linux_x86_64"]


@given(
    minor=st.integers(min_value=17, max_value=60),
    machine=st.sampled_from(["x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x"]),
)
def test_platform_tags_are_unique_and_newest_first(minor: int, machine: str) -> None:
    tags = compatible_platform_tags(replace(DEBIAN, machine=machine, glibc=(2, minor)))
    assert len(tags) == len(set(tags))
    assert all(tag.endswith(f"_{machine}") for tag in tags)
    minors = [int(tag.split("_")[2]) for tag in tags if tag.startswith("manylinux_2_")]
    assert minors == sorted(minors, reverse=True)
    assert minors[0] == minor
    assert minors[-1] == (5 if machine in {"x86_64", "i686"} else 17)
    assert f"manylinux2014_{machine}" in tags


# --- requirements ----------------------------------------------------------------------------


def test_requirements_are_pinned_to_coords_own_environment() -> None:
    pins = {requirement.name: requirement.version for requirement in AGENT_REQUIREMENTS}
    assert set(pins) == set(AGENT_DISTRIBUTIONS)
    assert list(pins) == sorted(pins)
    for name, version in pins.items():
        assert version == importlib.metadata.version(name)
    import rpyc

    assert pins["rpyc"] == rpyc.__version__  # both ends of the RPyC link run the same rpyc


def test_the_agent_imports_nothing_but_the_standard_library_and_its_bundle() -> None:
    """Every module the ``agent`` package imports (by its source, so a lazy import counts too)
    is of the standard library, the agent itself, or a distribution the bundle holds: a host
    has nothing else. redis-py is coord's, never the agent's."""
    provided = {top for top, distributions in importlib.metadata.packages_distributions().items()
                if set(distributions) & set(AGENT_DISTRIBUTIONS)}
    agent_root = Path(bundle.__file__).parents[2] / "agent"
    imported: dict[str, str] = {}
    for path in sorted(agent_root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                imported.setdefault(name.split(".")[0], str(path.relative_to(agent_root)))
    foreign = {top: where for top, where in imported.items()
               if top not in sys.stdlib_module_names and top != "agent" and top not in provided}
    assert foreign == {}
    assert "redis" not in imported


@pytest.mark.parametrize("version", ["3.10.12", "3.11.2", "3.12.3", "3.13.1"])
def test_every_declared_dependency_is_bundled_or_excluded_for_a_reason(version: str) -> None:
    """Walk the installed metadata: a dependency added by an upgrade must be looked at."""
    major, minor, _micro = (int(part) for part in version.split("."))
    bundled = {canonicalize_name(req.name) for req in AGENT_REQUIREMENTS}
    environment = {key: str(value) for key, value in default_environment().items()}
    environment.update(python_version=f"{major}.{minor}", python_full_version=version)
    excluded = {canonicalize_name(name) for name in EXCLUDED_DEPENDENCIES}
    pending = [(name, "") for name in AGENT_DISTRIBUTIONS]
    seen: set[str] = set()
    while pending:
        name, extra = pending.pop()
        if canonicalize_name(name) in seen:
            continue
        seen.add(canonicalize_name(name))
        for text in importlib.metadata.requires(name) or []:
            requirement = PackagingRequirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(
                {**environment, "extra": extra}
            ):
                continue
            dependency = canonicalize_name(requirement.name)
            if dependency in excluded:
                continue
            assert dependency in bundled, f"{name} needs {text} on Python {version}"
            if dependency in {canonicalize_name(d) for d in AGENT_DISTRIBUTIONS}:
                pending.append((requirement.name, ""))


# --- hashing and refusals --------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, bytes], order: list[str]) -> None:
    for relative in order:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[relative])


def test_tree_hash_ignores_order_and_mtimes_but_not_content(tmp_path: Path) -> None:
    files = {"agent/__init__.py": b"x = 1\n", "site/a/b.py": b"", "site/z.so": b"\x7fELF"}
    first, second = tmp_path / "one", tmp_path / "two"
    write_tree(first, files, sorted(files))
    write_tree(second, files, sorted(files, reverse=True))
    os.utime(second / "site/z.so", (1, 1))
    assert tree_hash(first) == tree_hash(second)
    (second / "site/a/b.py").write_bytes(b"\n")
    assert tree_hash(first) != tree_hash(second)
    (second / "site/a/b.py").write_bytes(b"")
    (second / "site/z.so").chmod(0o755)
    assert tree_hash(first) != tree_hash(second)
    (second / "site/z.so").chmod(0o644)
    (second / "site/a/b.py").rename(second / "site/a/c.py")
    assert tree_hash(first) != tree_hash(second)


def test_old_python_is_refused_before_any_download(tmp_path: Path) -> None:
    old = parse_probe(probe_output(version=[3, 9, 2], abi="cp39", machine="aarch64"))
    with pytest.raises(BundleError) as caught:
        build_bundle(old, tmp_path, host="client7")
    assert caught.value.host == "client7"
    assert "python /usr/bin/python3 3.9.2" in str(caught.value)
    assert ">= 3.10" in str(caught.value)
    assert not (tmp_path / "wheels").exists()


@pytest.mark.parametrize(
    "manifest", ['{"format": 1}', "[1]", '{"format": 1, "size": 0, "hash": "x", "files": "?"}']
)
def test_a_damaged_cache_entry_is_not_trusted(tmp_path: Path, manifest: str) -> None:
    (tmp_path / "bundle.tar.gz").write_bytes(b"")
    (tmp_path / "bundle.json").write_text(manifest)
    assert _load_cached(tmp_path, DEBIAN, AGENT_REQUIREMENTS) is None


def test_missing_wheelhouse_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="is not a directory"):
        build_bundle(DEBIAN, tmp_path / "cache", tmp_path / "nowhere", host="client1")


def test_bytecode_is_compiled_in_deterministically_and_left_out_of_the_hash(
        tmp_path: Path) -> None:
    trees = []
    for name in ("one", "two"):  # two builds in two places
        tree = tmp_path / name / "tree"
        (tree / "agent").mkdir(parents=True)
        (tree / "agent" / "__init__.py").write_text("VALUE = 1\n")
        (tree / "agent" / "broken.py").write_text("def (\n")  # left for the host
        before = tree_hash(tree)
        bundle._compile_bytecode(tree)
        assert tree_hash(tree) == before
        trees.append(tree)
    compiled = [sorted((t / "agent" / "__pycache__").iterdir()) for t in trees]
    assert [path.name for path in compiled[0]] == [f"__init__.{sys.implementation.cache_tag}.pyc"]
    assert compiled[0][0].read_bytes() == compiled[1][0].read_bytes()


def test_bytecode_only_for_this_pythons_version_and_abi() -> None:
    here = Interpreter(executable="/usr/bin/python3", version=sys.version_info[:3],
                       implementation="cpython", abi=f"cp{sys.version_info[0]}"
                       f"{sys.version_info[1]}{sys.abiflags}", machine="x86_64",
                       glibc=(2, 36), platform="linux")
    assert bundle.compiles_bytecode_for(here)
    older = (sys.version_info[0], sys.version_info[1] - 1, 0)
    assert not bundle.compiles_bytecode_for(
        replace(here, version=older, abi=f"cp{older[0]}{older[1]}"))
    assert not bundle.compiles_bytecode_for(replace(here, abi=here.abi + "t"))
