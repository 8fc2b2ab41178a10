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
    .complete   (remote only) written last: the directory is whole

Local cache under ``cache_root``::

    wheels/<interpreter tag>/*.whl                  pip's downloads, reused across builds
    bundles/<interpreter tag>-<key>/bundle.tar.gz   the archive, keyed by every build input
    bundles/<interpreter tag>-<key>/bundle.json     its hash, size and requirements

The functions here never print; failures are :class:`~coordinator.core.errors.BundleError` naming
the host, its interpreter and, for a missing wheel, the package.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import posixpath
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
from typing import TYPE_CHECKING, Any

from coordinator.core.errors import BundleError, RemoteCommandFailed, last_line

if TYPE_CHECKING:
    from coordinator.remote.ssh import SSHHost

BUNDLE_FORMAT = 1
"""Version of the bundle layout; part of every cache key, so a change rebuilds everything."""
PROBE_FORMAT = 1
"""Version of :data:`PROBE_SCRIPT`'s JSON document."""
MIN_PYTHON = (3, 10)
"""Oldest remote Python the agent supports."""
KEEP_REMOTE_BUNDLES = 2
"""Bundle directories kept on a host (the one just deployed and the newest other one)."""
STALE_REMOTE_SECONDS = 3600
"""Half-written uploads or unpack directories older than this are removed when pruning."""
PIP_TIMEOUT = 900.0
"""Seconds one ``pip download`` may take."""
REMOTE_TIMEOUT = 120.0
"""Seconds a remote bundle command (check, unpack) may take."""
ARCHIVE_MTIME = 946_684_800
"""mtime of every archive member (2000-01-01): archives do not depend on when they were built."""

PROBE_SCRIPT = (
    "import json,platform,struct,sys;"
    "v=sys.version_info;"
    "m=platform.machine();"
    "b=struct.calcsize('P')*8;"
    "l=platform.libc_ver();"
    "print(json.dumps({'probe':1,"
    "'executable':sys.executable,"
    "'version':[v[0],v[1],v[2]],"
    "'implementation':sys.implementation.name,"
    "'abi':'cp%d%d%s'%(v[0],v[1],getattr(sys,'abiflags','')),"
    "'machine':m,"
    "'bits':b,"
    "'libc':[l[0],l[1]],"
    "'platform':sys.platform,"
    f"'supported':v>={MIN_PYTHON!r}}}))"
)
"""One line of Python, run as ``python3 -c PROBE_SCRIPT`` on a host; prints one JSON object.

It uses nothing newer than Python 3.0 so that an old interpreter still says what it is (and
coord can refuse it by name) instead of failing with a syntax error.
"""

AGENT_DISTRIBUTIONS = ("rpyc", "psutil", "hdrhistogram", "redis", "hiredis")
"""Distributions the ``agent`` package imports, directly or through ``redis[hiredis]``."""

EXCLUDED_DEPENDENCIES = {
    "plumbum": "rpyc imports it only in rpyc.utils.zerodeploy and its command-line tools",
    "typing-extensions": "needed only by plumbum",
    "pbr": "hdrhistogram's build tool; never imported at run time",
    "setuptools": "listed by hdrhistogram and pbr; never imported at run time",
}
"""Declared dependencies of :data:`AGENT_DISTRIBUTIONS` that the agent does not need."""


@dataclass(frozen=True)
class ConditionalRequirement:
    """A distribution needed only by some interpreters, with its pin when not installed here."""

    name: str
    below: tuple[int, int, int]
    """Needed when the remote Python's version is lower than this."""
    fallback_version: str
    """Pin used when the coordinator's own environment does not have the distribution."""
    reason: str


CONDITIONAL_REQUIREMENTS = (
    ConditionalRequirement(
        "async-timeout",
        (3, 11, 3),
        "5.0.1",
        "`import redis` imports redis.asyncio, which imports async_timeout before Python 3.11.3",
    ),
)


@dataclass(frozen=True)
class Requirement:
    """One pinned distribution: ``name==version``."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


AGENT_REQUIREMENTS: tuple[Requirement, ...] = tuple(
    Requirement(name, importlib.metadata.version(name)) for name in AGENT_DISTRIBUTIONS
)
"""What every bundle holds, pinned to the versions in coord's own environment (so both ends
of the RPyC link run the same rpyc); :func:`agent_requirements` adds per-interpreter ones."""


# --- the remote interpreter ------------------------------------------------------------------


_ARCH_32 = {"x86_64": "i686", "aarch64": "armv7l", "ppc64": "ppc", "s390x": "s390"}
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
_LEGACY_ARCHES = {
    "manylinux2014": {"x86_64", "i686", "aarch64", "armv7l", "ppc64", "ppc64le", "s390x"},
    "manylinux2010": {"x86_64", "i686"},
    "manylinux1": {"x86_64", "i686"},
}


@dataclass(frozen=True)
class Interpreter:
    """What a host's Python is, as far as wheels are concerned."""

    executable: str
    version: tuple[int, int, int]
    implementation: str
    abi: str
    """ABI tag of the interpreter, e.g. ``cp311`` (``cp313t`` for a free-threaded build)."""
    machine: str
    """Wheel architecture: ``x86_64``, ``aarch64``, ``i686`` (32-bit Python on x86_64)..."""
    glibc: tuple[int, int] | None
    """glibc version, or None when the C library is not glibc (musl...)."""
    platform: str

    @property
    def supported(self) -> bool:
        """CPython >= :data:`MIN_PYTHON` on Linux (what the agent and its wheels need)."""
        return (
            self.implementation == "cpython"
            and self.version[:2] >= MIN_PYTHON
            and self.platform.startswith("linux")
        )

    @property
    def python_version(self) -> str:
        """``3.11`` (pip's ``--python-version``)."""
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def version_text(self) -> str:
        return ".".join(str(part) for part in self.version)

    @property
    def tag(self) -> str:
        """``cp311-x86_64-glibc2.36``: what a wheel choice depends on (cache directory name)."""
        libc = f"glibc{self.glibc[0]}.{self.glibc[1]}" if self.glibc else "nonglibc"
        return f"{self.abi}-{self.machine}-{libc}"

    def describe(self) -> str:
        """``python /usr/bin/python3 3.11.2``, as messages name it."""
        return f"python {self.executable} {self.version_text}"


def _field(document: dict[str, Any], key: str, kind: type) -> Any:
    if key not in document:
        raise ValueError(f"probe output lacks {key!r}")
    value = document[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"probe field {key!r} is {value!r}, not a {kind.__name__}")
    return value


def _parse_glibc(libc: list[Any]) -> tuple[int, int] | None:
    if len(libc) != 2 or libc[0] != "glibc":
        return None
    match = re.match(r"(\d+)\.(\d+)", str(libc[1]))
    return (int(match.group(1)), int(match.group(2))) if match else None


def parse_probe(text: str) -> Interpreter:
    """The :class:`Interpreter` described by :data:`PROBE_SCRIPT`'s output.

    Raises ``ValueError`` with a one-line reason when ``text`` is not such output.
    """
    line = text.strip().splitlines()[-1] if text.strip() else ""
    try:
        document = json.loads(line)
    except json.JSONDecodeError:
        raise ValueError(f"probe printed {text.strip()[:200]!r}, not JSON") from None
    if not isinstance(document, dict):
        raise ValueError("probe output is not a JSON object")
    if document.get("probe") != PROBE_FORMAT:
        raise ValueError(f"unknown probe format {document.get('probe')!r}")
    raw_version = _field(document, "version", list)
    if len(raw_version) != 3 or not all(
        isinstance(part, int) and not isinstance(part, bool) for part in raw_version
    ):
        raise ValueError(f"probe version {raw_version!r} is not three integers")
    version = (raw_version[0], raw_version[1], raw_version[2])
    machine = _field(document, "machine", str).lower()
    bits = _field(document, "bits", int)
    machine = {"amd64": "x86_64", "arm64": "aarch64", "i386": "i686", "i586": "i686"}.get(
        machine, machine
    )
    if bits == 32:
        machine = _ARCH_32.get(machine, machine)
    abi = _field(document, "abi", str)
    if not re.fullmatch(r"cp\d+[a-z]*", abi):
        raise ValueError(f"probe abi {abi!r} is not like cp311")
    return Interpreter(
        executable=_field(document, "executable", str),
        version=version,
        implementation=_field(document, "implementation", str),
        abi=abi,
        machine=machine,
        glibc=_parse_glibc(_field(document, "libc", list)),
        platform=_field(document, "platform", str),
    )


def compatible_platform_tags(interpreter: Interpreter) -> list[str]:
    """Wheel platform tags the interpreter can load, most specific first.

    ``manylinux_2_X_<arch>`` for X from the host's glibc down to 17 (down to 5 on x86_64 and
    i686, where older manylinux wheels exist), each followed by its legacy alias
    (``manylinux2014``, ``manylinux2010``, ``manylinux1``) where one exists for the
    architecture; then ``linux_<arch>``. Without glibc only ``linux_<arch>`` remains.
    """
    arch = interpreter.machine
    tags: list[str] = []
    if interpreter.glibc is not None and interpreter.glibc[0] == 2:
        lowest = 5 if arch in {"x86_64", "i686"} else 17
        for minor in range(interpreter.glibc[1], lowest - 1, -1):
            tags.append(f"manylinux_2_{minor}_{arch}")
            legacy = _LEGACY_MANYLINUX.get((2, minor))
            if legacy is not None and arch in _LEGACY_ARCHES[legacy]:
                tags.append(f"{legacy}_{arch}")
    tags.append(f"linux_{arch}")
    return tags


def agent_requirements(interpreter: Interpreter) -> tuple[Requirement, ...]:
    """:data:`AGENT_REQUIREMENTS` plus what this interpreter needs besides (sorted by name)."""
    requirements = list(AGENT_REQUIREMENTS)
    for conditional in CONDITIONAL_REQUIREMENTS:
        if interpreter.version < conditional.below:
            try:
                version = importlib.metadata.version(conditional.name)
            except importlib.metadata.PackageNotFoundError:
                version = conditional.fallback_version
            requirements.append(Requirement(conditional.name, version))
    return tuple(sorted(requirements, key=lambda requirement: requirement.name))


def probe_interpreter(ssh_host: SSHHost, timeout: float = 30.0) -> Interpreter:
    """Run :data:`PROBE_SCRIPT` with the host's Python; BundleError if it cannot be used."""
    python = ssh_host.python
    try:
        stdout, _ = ssh_host.run([python, "-I", "-c", PROBE_SCRIPT], timeout=timeout)
    except RemoteCommandFailed as exc:
        raise BundleError(ssh_host.name, f"cannot run python {python}: {exc.reason}") from exc
    try:
        interpreter = parse_probe(stdout)
    except ValueError as exc:
        raise BundleError(ssh_host.name, f"python {python}: {exc}") from exc
    return interpreter


# --- building --------------------------------------------------------------------------------


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
    requirements = agent_requirements(interpreter)
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


# --- deploying -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployResult:
    """What :func:`ensure_bundle` did on one host."""

    cached: bool
    """The host already had the bundle: nothing was uploaded."""
    bytes_uploaded: int
    remote_dir: str
    """Absolute path of the unpacked bundle on the host."""

    @property
    def pythonpath(self) -> str:
        """PYTHONPATH that makes the agent and its dependencies importable on the host."""
        return f"{self.remote_dir}:{posixpath.join(self.remote_dir, 'site')}"


_TREE_CHECK = """\
import hashlib, os, pwd, stat, sys
os.umask(0o077)
def user(uid):
    try:
        return "%s (uid %d)" % (pwd.getpwuid(uid).pw_name, uid)
    except KeyError:
        return "uid %d" % uid
def unsafe(path, why):
    print("unsafe")
    print(path)
    print(why)
    sys.exit(0)
def check(path, st):
    if stat.S_ISLNK(st.st_mode):
        unsafe(path, "is a symbolic link")
    if st.st_uid != os.getuid():
        owners = (user(st.st_uid), user(os.getuid()))
        unsafe(path, "is owned by %s, not by the SSH user %s" % owners)
    if st.st_mode & 0o022:
        unsafe(path, "is writable by others (mode %o)" % stat.S_IMODE(st.st_mode))
def tree_hash(top):
    found = []
    def walk(directory, parts, hashed):
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            st = os.lstat(path)
            check(path, st)
            if stat.S_ISDIR(st.st_mode):
                walk(path, parts + (name,), hashed and name != "__pycache__")
            elif not stat.S_ISREG(st.st_mode):
                unsafe(path, "is not a regular file or directory")
            elif hashed and parts + (name,) != (".complete",):
                found.append((parts + (name,), path, st.st_mode))
    walk(top, (), True)
    digest = hashlib.sha256()
    for parts, path, mode in sorted(found):
        with open(path, "rb") as handle:
            data = handle.read()
        executable = "x" if mode & stat.S_IXUSR else "-"
        digest.update(("%s\\0%s\\0%d\\0" % ("/".join(parts), executable, len(data))).encode())
        digest.update(data)
    return digest.hexdigest()
"""
"""Shared by the remote scripts: refuse what another user owns or may write (``unsafe``, then
the path and why, on three lines), and hash a bundle tree as :func:`tree_hash` does."""

_CHECK_SCRIPT = _TREE_CHECK + """\
import shutil
root = os.path.realpath(os.path.expanduser(sys.argv[1]))
os.makedirs(root, mode=0o700, exist_ok=True)
check(root, os.stat(root))
bundles = os.path.join(root, "bundles")
if not os.path.lexists(bundles):
    os.mkdir(bundles, 0o700)
check(bundles, os.lstat(bundles))
target = os.path.join(bundles, sys.argv[2])
state = "missing"
if os.path.lexists(target):
    check(target, os.lstat(target))
    marker = os.path.join(target, ".complete")
    if os.path.isfile(marker) and tree_hash(target) == sys.argv[2]:
        os.utime(marker)
        state = "complete"
    else:
        shutil.rmtree(target)
print(state)
print(target)
"""
"""argv: cache_dir hash. Prints ``complete|missing`` then the bundle's absolute directory, or
``unsafe``, a path and why. Creates the cache directories (owner-only) and checks that they,
and every entry of a cached bundle, belong to the SSH user and are writable by nobody else;
a cached bundle counts only if its content hash matches (a damaged one is removed). Marks a
present bundle as just used (for pruning)."""

_UNPACK_SCRIPT = """\
import os, shutil, sys, tarfile, time
os.umask(0o077)
archive, target, digest, keep = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
parent, name = os.path.split(target)
work = "%s.tmp-%d" % (target, os.getpid())
shutil.rmtree(work, ignore_errors=True)
with tarfile.open(archive, "r:gz") as tar:
    members = tar.getmembers()
    for member in members:
        parts = member.name.split("/")
        if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
            sys.exit("unsafe member in bundle archive: %r" % member.name)
    options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    tar.extractall(work, members=members, **options)
with open(os.path.join(work, ".complete"), "w") as handle:
    handle.write(digest + "\\n")
if os.path.isdir(target) and not os.path.isfile(os.path.join(target, ".complete")):
    shutil.rmtree(target)
try:
    os.rename(work, target)
except OSError:
    if not os.path.isfile(os.path.join(target, ".complete")):
        raise
    shutil.rmtree(work, ignore_errors=True)
os.unlink(archive)
now = time.time()
done = []
for entry in os.listdir(parent):
    path = os.path.join(parent, entry)
    if entry == name:
        continue
    marker = os.path.join(path, ".complete")
    if os.path.isfile(marker):
        done.append((os.path.getmtime(marker), path))
    elif now - os.lstat(path).st_mtime > STALE_SECONDS:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
done.sort(reverse=True)
for _, path in done[keep - 1:]:
    shutil.rmtree(path, ignore_errors=True)
""".replace("STALE_SECONDS", str(STALE_REMOTE_SECONDS))
"""argv: archive target hash keep. Unpacks the archive beside ``target``, writes ``.complete``
last, renames into place, removes the archive and prunes older bundles (keeps ``keep``)."""


def ensure_bundle(ssh_host: SSHHost, bundle: Bundle, remote_cache_dir: str) -> DeployResult:
    """Make sure the host holds ``bundle`` unpacked under ``remote_cache_dir``.

    One remote command when it is there already (nothing is transferred); otherwise an SFTP
    upload of the archive, an unpack with the host's own Python (no tar needed), ``.complete``
    written last, and older bundles pruned. ``~`` in ``remote_cache_dir`` is expanded by the
    host. Every path reaches the host as a separate, quoted argument.
    """
    python = ssh_host.python
    stdout, _ = ssh_host.run(
        [python, "-I", "-c", _CHECK_SCRIPT, remote_cache_dir, bundle.hash],
        timeout=REMOTE_TIMEOUT,
    )
    lines = stdout.splitlines()
    if len(lines) >= 3 and lines[0] == "unsafe":
        raise BundleError(
            ssh_host.name,
            f"unsafe agent cache: {lines[1]} {lines[2]}; agent.cache_dir and the bundles in it "
            "must belong to the SSH user and be writable by nobody else (choose a private "
            "directory, or remove this one)",
        )
    if len(lines) < 2 or lines[0] not in {"complete", "missing"}:
        raise BundleError(ssh_host.name, f"unexpected answer from the bundle check: {stdout!r}")
    state, remote_dir = lines[0], lines[1]
    if state == "complete":
        return DeployResult(cached=True, bytes_uploaded=0, remote_dir=remote_dir)
    upload = f"{remote_dir}.{os.urandom(4).hex()}.tar.gz.part"
    sent = ssh_host.put(bundle.archive, upload)
    ssh_host.run(
        [python, "-I", "-c", _UNPACK_SCRIPT, upload, remote_dir, bundle.hash,
         str(KEEP_REMOTE_BUNDLES)],
        timeout=REMOTE_TIMEOUT,
    )  # fmt: skip
    return DeployResult(cached=False, bytes_uploaded=sent, remote_dir=remote_dir)
