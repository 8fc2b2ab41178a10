"""Parsers of what :mod:`agent.platform` reads: ``/proc/cpuinfo``, ``/etc/os-release``,
``/proc/meminfo``, cgroup files, ``ethtool`` output, tools' version lines, ``INFO``.

Pure: text in, values out, no I/O. A parser answers None (or an empty result) for text it
cannot read; the collector turns that into an unknown with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class CpuTopology:
    """What ``/proc/cpuinfo`` says about the processors. ``sockets`` and ``cores`` are None
    when the kernel does not report ``physical id`` / ``core id`` (some ARM and VM kernels)."""

    model: str | None
    threads: int
    sockets: int | None
    cores: int | None
    hypervisor: bool


def parse_cpuinfo(text: str) -> CpuTopology:
    """Model name, logical CPUs, sockets and physical cores, and the ``hypervisor`` flag."""
    blocks = [block for block in text.split("\n\n") if block.strip()]
    processors = [_fields(block) for block in blocks if "processor" in _fields(block)]
    model = None
    for fields in processors:
        model = fields.get("model name") or fields.get("Model") or fields.get("cpu model")
        if model:
            break
    sockets = {fields["physical id"] for fields in processors if "physical id" in fields}
    cores = {
        (fields["physical id"], fields["core id"])
        for fields in processors
        if "physical id" in fields and "core id" in fields
    }
    hypervisor = any("hypervisor" in fields.get("flags", "").split() for fields in processors)
    return CpuTopology(
        model=model or None,
        threads=len(processors),
        sockets=len(sockets) or None,
        cores=len(cores) or None,
        hypervisor=hypervisor,
    )


def _fields(block: str) -> dict[str, str]:
    fields = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def parse_os_release(text: str) -> str | None:
    """``PRETTY_NAME`` of an os-release file (else ``NAME VERSION``), unquoted."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key] = _unquote(value)
    if values.get("PRETTY_NAME"):
        return values["PRETTY_NAME"]
    name = " ".join(part for part in (values.get("NAME"), values.get("VERSION")) if part)
    return name or None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value.replace('\\"', '"').replace("\\\\", "\\")


def parse_meminfo_total(text: str) -> int | None:
    """``MemTotal`` of ``/proc/meminfo``, in bytes."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                unit = parts[2].lower() if len(parts) > 2 else "b"
                return int(parts[1]) * (1024 if unit == "kb" else 1)
    return None


# --- cgroups ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupMembership:
    """Where a process sits in the cpu controller's hierarchy: ``v2`` (unified) or ``v1``."""

    version: str
    path: str


def parse_proc_cgroup(text: str) -> CgroupMembership | None:
    """The cpu controller's cgroup of a process, from its ``/proc/<pid>/cgroup``: the v1 line
    listing ``cpu`` if there is one (a hybrid host limits CPU there), else the v2 line."""
    unified = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hierarchy, controllers, path = parts
        if "cpu" in controllers.split(","):
            return CgroupMembership("v1", path)
        if controllers == "":
            unified = CgroupMembership("v2", path)
    return unified


def cgroup_mount(mounts_text: str, version: str) -> str | None:
    """Where the hierarchy of ``version`` is mounted, from ``/proc/self/mounts``: the cgroup2
    mount, or the v1 mount whose options include ``cpu``."""
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        kind, options = fields[2], fields[3].split(",")
        if version == "v2" and kind == "cgroup2":
            return _unescape_mount(fields[1])
        if version == "v1" and kind == "cgroup" and "cpu" in options:
            return _unescape_mount(fields[1])
    return None


def _unescape_mount(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


def parse_cpu_max(text: str) -> float | None:
    """Cores allowed by a cgroup v2 ``cpu.max`` (``"50000 100000"`` → 0.5); None for ``max``
    (no limit). ValueError for text that is not a ``cpu.max``."""
    parts = text.split()
    if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) <= 0:
        raise ValueError(f"not a cpu.max: {text.strip()!r}")
    if parts[0] == "max":
        return None
    if not parts[0].isdigit():
        raise ValueError(f"not a cpu.max: {text.strip()!r}")
    return int(parts[0]) / int(parts[1])


def parse_cfs_quota(quota_text: str, period_text: str) -> float | None:
    """Cores allowed by cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; None for a
    quota of -1 (no limit). ValueError for text that is not a number."""
    quota, period = int(quota_text.strip()), int(period_text.strip())
    if quota < 0:
        return None
    if period <= 0:
        raise ValueError(f"cpu.cfs_period_us is {period}")
    return quota / period


def cgroup_ancestry(path: str) -> list[str]:
    """``/a/b`` → ``["/a/b", "/a", "/"]``: a cgroup and its ancestors, innermost first."""
    parts = [part for part in path.split("/") if part]
    return ["/" + "/".join(parts[:end]) for end in range(len(parts), -1, -1)]


# --- ethtool ---------------------------------------------------------------------------------


def parse_ethtool_driver(text: str) -> str | None:
    """The ``driver:`` of ``ethtool -i`` (with its ``version:`` when it has one)."""
    fields = _fields(text)
    driver = fields.get("driver")
    if not driver:
        return None
    version = fields.get("version")
    return f"{driver} {version}" if version else driver


#: The offloads that change a benchmark's figures, as ``ethtool -k`` names them.
OFFLOADS: Final = (
    "rx-checksumming",
    "tx-checksumming",
    "scatter-gather",
    "tcp-segmentation-offload",
    "generic-segmentation-offload",
    "generic-receive-offload",
    "large-receive-offload",
)


def parse_ethtool_features(text: str) -> dict[str, bool]:
    """The :data:`OFFLOADS` of ``ethtool -k``, on or off (``[fixed]`` ignored)."""
    features: dict[str, bool] = {}
    for line in text.splitlines():
        if line.startswith((" ", "\t")):
            continue  # a sub-feature
        key, sep, value = line.partition(":")
        words = value.split()
        if sep and key in OFFLOADS and words and words[0] in ("on", "off"):
            features[key] = words[0] == "on"
    return features


# --- tools and servers -----------------------------------------------------------------------


def version_line(output: str) -> str | None:
    """The first non-empty line of a tool's version output."""
    for line in output.splitlines():
        if line.strip():
            return line.strip()
    return None


#: ``INFO server`` fields that change while a server runs: left out, so two descriptions of
#: one server compare equal.
VOLATILE_INFO: Final = frozenset(
    {"process_id", "run_id", "uptime_in_seconds", "uptime_in_days", "lru_clock",
     "server_time_usec", "configured_hz_now"}
)  # fmt: skip


def parse_info(text: str) -> dict[str, str]:
    """An ``INFO`` reply's ``key:value`` lines (sections and comments skipped), less the
    :data:`VOLATILE_INFO` fields."""
    fields = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if sep and key not in VOLATILE_INFO:
            fields[key] = value
    return fields
