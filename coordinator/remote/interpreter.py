"""The remote interpreter: what a host's python3 is, and which agent wheels fit it.

Remote hosts have SSH and a python3 (>= 3.10) and nothing else, so coord asks the host's
interpreter what it is (:data:`PROBE_SCRIPT`, parsed by :func:`parse_probe`) before building a
bundle for it (:mod:`coordinator.remote.bundle`): version, ABI, machine and libc decide the
wheels (:func:`compatible_platform_tags`, :data:`AGENT_REQUIREMENTS`).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coordinator.core.errors import BundleError, RemoteCommandFailed

if TYPE_CHECKING:
    from coordinator.remote.ssh import SSHHost

PROBE_FORMAT = 1
"""Version of :data:`PROBE_SCRIPT`'s JSON document."""
MIN_PYTHON = (3, 10)
"""Oldest remote Python the agent supports."""

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

AGENT_DISTRIBUTIONS = ("hdrhistogram", "hiredis", "httptools", "psutil", "rpyc")
"""Distributions the ``agent`` package imports (hiredis: the RESP reply parser; httptools: the
http driver's). Not redis-py: the agent speaks RESP itself (``agent.drivers.resp``), and the
coordinator's own dependency on it (the lab, the tests) never reaches a host; a unit test
checks that the agent imports nothing else outside the standard library."""

EXCLUDED_DEPENDENCIES = {
    "plumbum": "rpyc imports it only in rpyc.utils.zerodeploy and its command-line tools",
    "typing-extensions": "needed only by plumbum",
    "pbr": "hdrhistogram's build tool; never imported at run time",
    "setuptools": "listed by hdrhistogram and pbr; never imported at run time",
}
"""Declared dependencies of :data:`AGENT_DISTRIBUTIONS` that the agent does not need."""


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
"""What every bundle holds, sorted by name, pinned to the versions in coord's own environment
(so both ends of the RPyC link run the same rpyc)."""


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


