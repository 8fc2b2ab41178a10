"""The agent bundle: everything the agent needs, built for one remote interpreter.

Remote hosts have SSH and a python3 (>= 3.10) and nothing else: no pip, no compiler, no
internet. So coord asks the host's interpreter what it is (:data:`PROBE_SCRIPT`, parsed by
:func:`parse_probe`), downloads the exact wheels the agent imports for that interpreter's
version, ABI and platform (:func:`build_bundle`, with ``pip download`` on the operator's
machine, from the index or from a ``--wheelhouse`` directory), unpacks them with a copy of the
``agent`` package, and ships the result as one deterministic ``.tar.gz`` that the host unpacks
with its own Python (:func:`ensure_bundle`). A bundle is named by a content hash; a host that
already holds it receives nothing.

Layout of a bundle, locally in the archive and remotely under
``<cache_dir>/bundles/<hash>/``::

    agent/      the agent package, as in this source tree
    site/       the wheels' contents (put both on PYTHONPATH: ``<dir>:<dir>/site``)
    **/__pycache__/*.pyc   their bytecode, when coord's Python is the host's version
    .complete   (remote only) written last: the directory is whole

Local cache under ``cache_root``::

    wheels/<interpreter tag>/*.whl                  pip's downloads, reused across builds
    bundles/<interpreter tag>-<key>/bundle.tar.gz   the archive, keyed by every build input
    bundles/<interpreter tag>-<key>/bundle.json     its hash, size and requirements

This module builds the bundle; :mod:`coordinator.remote.interpreter` probes the host's
interpreter and :mod:`coordinator.remote.bundle_ship` ships the bundle and checks it on the
host. The functions here never print; failures are
:class:`~coordinator.core.errors.BundleError` naming the host, its interpreter and, for a
missing wheel, the package.
"""

from __future__ import annotations

import compileall
import contextlib
import fcntl
import gzip
import hashlib
import importlib.util
import io
import json
import py_compile
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from coordinator.core.errors import BundleError, last_line
from coordinator.remote.bundle_ship import DeployResult, ensure_bundle
from coordinator.remote.interpreter import (
    AGENT_REQUIREMENTS,
    MIN_PYTHON,
    Interpreter,
    Requirement,
    compatible_platform_tags,
    probe_interpreter,
)

__all__ = [
    "Bundle",
    "DeployResult",
    "Interpreter",
    "build_bundle",
    "ensure_bundle",
    "probe_interpreter",
    "tree_hash",
]
# DeployResult, ensure_bundle, Interpreter and probe_interpreter are re-exported for deploy,
# which takes the whole bundle life cycle from here.

BUNDLE_FORMAT = 2
"""Version of the bundle layout; part of every cache key, so a change rebuilds everything.
2: the bytecode compiled in (:func:`compiles_bytecode_for`)."""
PIP_TIMEOUT = 900.0
"""Seconds one ``pip download`` may take."""
ARCHIVE_MTIME = 946_684_800
"""mtime of every archive member (2000-01-01): archives do not depend on when they were built."""




@dataclass(frozen=True)
class Bundle:
    """A built bundle: its content hash and the archive that holds it."""

    hash: str
    """sha256 (hex) over the bundle's sorted relative paths, modes and file bytes."""
    archive: Path
    interpreter: Interpreter
    requirements: tuple[Requirement, ...]
    size: int
    """Bytes of the archive."""
    files: int
    from_cache: bool
    """True when the archive came from the local cache (no pip call, nothing unpacked)."""


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _agent_dir() -> Path:
    spec = importlib.util.find_spec("agent")
    if spec is None or spec.origin is None:
        raise RuntimeError("the agent package cannot be found next to coord")
    return Path(spec.origin).parent


def _source_files(root: Path) -> list[Path]:
    """Files of a package tree worth shipping (no caches, no compiled files), sorted."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.relative_to(root).parts
        and path.suffix not in {".pyc", ".pyo"}
    )


def _mode(path: Path) -> int:
    """The mode a bundle gives a file: only the owner's exec bit of the source survives."""
    return 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644


def _digest_files(root: Path, files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        data = path.read_bytes()
        relative = path.relative_to(root).as_posix()
        executable = "x" if path.stat().st_mode & stat.S_IXUSR else "-"
        digest.update(f"{relative}\0{executable}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def tree_hash(root: Path) -> str:
    """The content hash of a bundle tree: relative paths (sorted by their parts), exec bits
    and bytes; ``__pycache__`` directories (which Python writes where it runs) left out.

    Independent of mtimes, owners and the order files were written in. Hosts compute the same
    hash of their unpacked copy (:data:`_TREE_CHECK`) before they use it.
    """
    files = [
        path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.relative_to(root).parts
    ]
    return _digest_files(root, sorted(files, key=lambda path: path.relative_to(root).parts))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wheel_for(directory: Path, requirement: Requirement) -> Path | None:
    prefix = f"{_normalize(requirement.name)}-{requirement.version}-"
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob("*.whl")):
        if path.name.lower().startswith(prefix.lower()):
            return path
    return None


def _pip_download(
    host: str,
    interpreter: Interpreter,
    requirements: Sequence[Requirement],
    destination: Path,
    wheelhouse: Path | None,
) -> None:
    tags = compatible_platform_tags(interpreter)
    argv = [
        sys.executable, "-m", "pip", "download",
        "--disable-pip-version-check", "--no-input", "--quiet",
        "--only-binary=:all:", "--no-deps",
        "--python-version", interpreter.python_version,
        "--implementation", "cp",
        "--abi", interpreter.abi,
    ]  # fmt: skip
    for tag in tags:
        argv += ["--platform", tag]
    if wheelhouse is not None:
        argv += ["--no-index", "--find-links", str(wheelhouse)]
    argv += ["-d", str(destination), *(str(requirement) for requirement in requirements)]
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BundleError(
            host,
            f"pip download did not finish within {PIP_TIMEOUT:g}s for {interpreter.describe()}",
        ) from exc
    if result.returncode == 0:
        return
    output = result.stderr + result.stdout
    missing = re.search(r"No matching distribution found for ([A-Za-z0-9_.\-]+)", output)
    if missing is None:
        missing = re.search(r"satisfies the requirement ([A-Za-z0-9_.\-]+)", output)
    if missing is not None:
        name = missing.group(1)
        pinned = {_normalize(requirement.name): requirement for requirement in requirements}
        requirement = pinned.get(_normalize(name))
        what = f"{requirement.name} {requirement.version}" if requirement else name
        source = f"in wheelhouse {wheelhouse}" if wheelhouse is not None else "on the index"
        raise BundleError(
            host,
            f"no wheel of {what} for {interpreter.abi} on {interpreter.machine} "
            f"({interpreter.describe()}) {source} (platforms tried: {', '.join(tags)}); "
            "put a matching wheel in a --wheelhouse directory, or use another interpreter "
            "(the host's `python` in the inventory)",
        )
    raise BundleError(
        host,
        f"pip download failed for {interpreter.describe()}: "
        f"{last_line(output) or f'exit status {result.returncode}'}",
    )


def _safe_member(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"unsafe path {name!r}")
    return path


def _unpack_wheel(host: str, wheel: Path, site: Path) -> None:
    """Install a wheel's files the way pip would for purelib/platlib (scripts and data skipped)."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            try:
                member = _safe_member(info.filename)
            except ValueError as exc:
                raise BundleError(host, f"wheel {wheel.name}: {exc}") from None
            parts = member.parts
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in {"purelib", "platlib"}:
                    continue
                parts = parts[2:]
            target = site.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink)
            executable = (info.external_attr >> 16) & 0o111
            target.chmod(0o755 if executable else 0o644)


def _write_archive(root: Path, archive: Path) -> int:
    """A deterministic .tar.gz of ``root``: sorted members, fixed mtime/owner/modes."""
    entries = sorted(root.rglob("*"), key=lambda path: path.relative_to(root).as_posix())
    with (
        archive.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in entries:
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            info.mtime = ARCHIVE_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            data = path.read_bytes()
            info.size = len(data)
            info.mode = _mode(path)
            tar.addfile(info, io.BytesIO(data))
    return archive.stat().st_size


def _build_key(
    interpreter: Interpreter,
    requirements: Sequence[Requirement],
    agent_digest: str,
    wheelhouse: Path | None,
) -> str:
    document = {
        "format": BUNDLE_FORMAT,
        "python": interpreter.python_version,
        "abi": interpreter.abi,
        "platforms": compatible_platform_tags(interpreter),
        "requirements": [str(requirement) for requirement in requirements],
        "agent": agent_digest,
        "wheelhouse": str(wheelhouse) if wheelhouse is not None else None,
        "bytecode": compiles_bytecode_for(interpreter),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _load_cached(
    directory: Path, interpreter: Interpreter, requirements: tuple[Requirement, ...]
) -> Bundle | None:
    manifest = directory / "bundle.json"
    archive = directory / "bundle.tar.gz"
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
        size = archive.stat().st_size
        if document["format"] != BUNDLE_FORMAT or document["size"] != size:
            return None
        content_hash, files = str(document["hash"]), int(document["files"])
    except (OSError, ValueError, LookupError, TypeError):
        return None  # a damaged or foreign cache entry is rebuilt, never trusted
    return Bundle(
        hash=content_hash,
        archive=archive,
        interpreter=interpreter,
        requirements=requirements,
        size=size,
        files=files,
        from_cache=True,
    )


def build_bundle(
    interpreter: Interpreter,
    cache_root: Path,
    wheelhouse: Path | None = None,
    *,
    host: str,
    agent_dir: Path | None = None,
) -> Bundle:
    """The bundle for ``interpreter``, from the cache under ``cache_root`` or built there.

    ``host`` names the host in errors (BundleError: unsupported Python, missing wheel, pip
    failure). With ``wheelhouse`` pip reads wheels from that directory only (no index).
    ``agent_dir`` defaults to this installation's ``agent`` package. Safe to call from
    several threads and processes at once: builds of the same key are serialized.
    """
    if not interpreter.supported:
        raise BundleError(
            host,
            f"{interpreter.describe()} ({interpreter.implementation} on {interpreter.platform}) "
            f"cannot run the agent: it needs CPython >= {MIN_PYTHON[0]}.{MIN_PYTHON[1]} on "
            "Linux; set the host's `python` in the inventory to a newer interpreter",
        )
    cache_root = Path(cache_root).absolute()
    wheelhouse = Path(wheelhouse).absolute() if wheelhouse is not None else None
    if wheelhouse is not None and not wheelhouse.is_dir():
        raise BundleError(host, f"wheelhouse {wheelhouse} is not a directory")
    requirements = AGENT_REQUIREMENTS
    agent_root = agent_dir if agent_dir is not None else _agent_dir()
    agent_files = _source_files(agent_root)
    key = _build_key(interpreter, requirements, _digest_files(agent_root, agent_files), wheelhouse)
    directory = cache_root / "bundles" / f"{interpreter.tag}-{key[:16]}"
    cached = _load_cached(directory, interpreter, requirements)
    if cached is not None:
        return cached
    with _file_lock(cache_root / "locks" / f"{interpreter.tag}-{key[:16]}.lock"):
        cached = _load_cached(directory, interpreter, requirements)
        if cached is not None:
            return cached
        wheels = _fetch_wheels(host, interpreter, requirements, cache_root, wheelhouse)
        return _assemble(
            host, interpreter, requirements, wheels, agent_root, agent_files, directory
        )


def compiles_bytecode_for(interpreter: Interpreter) -> bool:
    """Whether the bundle for ``interpreter`` carries its bytecode: when this Python is the
    same CPython version and ABI, whose bytecode the host's loads as its own.

    A host compiles what it imports the first time the agent starts: 0.25-0.3 s of CPU on an
    idle host, and seconds on one held to a small CPU quota (a quarter of a core made the
    agent's imports 10-25 times slower on the lab's VM), paid again on every fresh host."""
    local_abi = f"cp{sys.version_info[0]}{sys.version_info[1]}{getattr(sys, 'abiflags', '')}"
    return (sys.implementation.name == "cpython" == interpreter.implementation
            and interpreter.version[:2] == sys.version_info[:2] and interpreter.abi == local_abi)


def _compile_bytecode(tree: Path) -> None:
    """``__pycache__`` of every module in ``tree``, deterministic: validated against the
    source's hash, not its mtime, and named by a fixed path (a host's import puts its own in
    the code objects). The content hash leaves ``__pycache__`` out, as it must: Python writes
    there on every host that has no bytecode yet. A module that does not compile here (a
    wheel's file for another Python) is left for the host, which never imports it anyway."""
    compileall.compile_dir(tree, quiet=2, ddir="bundle", workers=1,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)


def _fetch_wheels(
    host: str,
    interpreter: Interpreter,
    requirements: tuple[Requirement, ...],
    cache_root: Path,
    wheelhouse: Path | None,
) -> list[Path]:
    source = (
        "index"
        if wheelhouse is None
        else "wheelhouse-" + hashlib.sha256(str(wheelhouse).encode()).hexdigest()[:12]
    )
    wheel_dir = cache_root / "wheels" / f"{interpreter.tag}-{source}"
    with _file_lock(cache_root / "locks" / f"wheels-{interpreter.tag}-{source}.lock"):
        missing = [req for req in requirements if _wheel_for(wheel_dir, req) is None]
        if missing:
            wheel_dir.mkdir(parents=True, exist_ok=True)
            _pip_download(host, interpreter, missing, wheel_dir, wheelhouse)
        wheels: list[Path] = []
        for requirement in requirements:
            wheel = _wheel_for(wheel_dir, requirement)
            if wheel is None:
                raise BundleError(
                    host, f"pip reported no error but no wheel of {requirement} is in {wheel_dir}"
                )
            wheels.append(wheel)
        return wheels


def _assemble(
    host: str,
    interpreter: Interpreter,
    requirements: tuple[Requirement, ...],
    wheels: Sequence[Path],
    agent_root: Path,
    agent_files: Sequence[Path],
    directory: Path,
) -> Bundle:
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=directory.parent))
    try:
        tree = staging / "tree"
        site = tree / "site"
        site.mkdir(parents=True)
        for wheel in wheels:
            _unpack_wheel(host, wheel, site)
        for path in agent_files:
            target = tree / "agent" / path.relative_to(agent_root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            target.chmod(_mode(path))
        content_hash = tree_hash(tree)
        if compiles_bytecode_for(interpreter):
            _compile_bytecode(tree)
        files = sum(1 for path in tree.rglob("*") if path.is_file())
        out = staging / "out"
        out.mkdir()
        size = _write_archive(tree, out / "bundle.tar.gz")
        manifest = {
            "format": BUNDLE_FORMAT,
            "hash": content_hash,
            "size": size,
            "files": files,
            "interpreter": interpreter.tag,
            "requirements": [str(requirement) for requirement in requirements],
        }
        (out / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        if directory.exists():
            shutil.rmtree(directory)
        out.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Bundle(
        hash=content_hash,
        archive=directory / "bundle.tar.gz",
        interpreter=interpreter,
        requirements=requirements,
        size=size,
        files=files,
        from_cache=False,
    )
