"""The platform description of the agent's host, and of a target server it can reach.

Reads ``/proc``, ``/sys``, ``/etc/os-release``, DMI, ``os.uname``, asks ``ethtool`` and
``systemd-detect-virt`` where they exist and the tools for their versions; the parsing is in
:mod:`agent.platform_parse`. Whatever cannot be read is recorded with its reason in the
message's ``unknown`` (see :mod:`agent.messages`): describing a host never fails.

``root`` (default ``/``) is where the files are read from, so tests can give a tree of their own.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from agent.drivers.errors import DriverError
from agent.drivers.resp import auth_command, encode_command
from agent.drivers.resp_connection import bind_source, describe_os_error, exchange
from agent.messages import (
    HostPlatform,
    NetInterface,
    PlatformDescription,
    ServerPlatform,
    ServerProbe,
    ToolVersion,
)
from agent.platform_parse import (
    cgroup_ancestry,
    cgroup_mount,
    parse_cfs_quota,
    parse_cpu_max,
    parse_cpuinfo,
    parse_ethtool_driver,
    parse_ethtool_features,
    parse_info,
    parse_meminfo_total,
    parse_os_release,
    parse_proc_cgroup,
    version_line,
)

T = TypeVar("T")

#: The tools a run may use, and the argument that makes each print its version.
TOOLS: Final = (
    ("redis-server", "--version"),
    ("redis-benchmark", "--version"),
    ("memtier_benchmark", "--version"),
    ("netperf", "-V"),
)
#: The server settings that change performance, asked with ``CONFIG GET``.
SERVER_CONFIG: Final = ("io-threads", "appendonly", "save", "maxmemory", "maxmemory-policy", "hz")
#: Longest wait for one command (a tool's version, ethtool) or the server's answers.
COMMAND_TIMEOUT_S: Final = 5.0
#: The kernel's clock source, under the root.
CLOCK_SOURCE: Final = "sys/devices/system/clocksource/clocksource0/current_clocksource"
#: Directories searched for system tools beyond PATH (an SSH session's PATH often lacks sbin).
SYSTEM_DIRS: Final = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def describe(server: ServerProbe | None, root: Path = Path("/")) -> PlatformDescription:
    """This host, and ``server`` when asked."""
    return PlatformDescription(
        host=describe_host(root), server=describe_server(server) if server else None
    )


class _Unknowns:
    """The ``unknown`` map of a message being built: :meth:`read` records why a value is
    missing instead of raising."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    def read(self, name: str, reader: Callable[[], T | None], missing: str) -> T | None:
        """``reader()``; on OSError or ValueError, or None from it, the reason is recorded
        (``missing`` for None) and the value is None."""
        try:
            value = reader()
        except OSError as exc:
            self.reasons[name] = _os_reason(exc)
            return None
        except ValueError as exc:
            self.reasons[name] = str(exc) or type(exc).__name__
            return None
        if value is None and missing:
            self.reasons[name] = missing
        return value


def _os_reason(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or type(exc).__name__}{where}"


def _text(path: Path) -> str:
    return path.read_text(errors="replace")


def _first(path: Path) -> str | None:
    return _text(path).strip() or None


def describe_host(root: Path = Path("/")) -> HostPlatform:
    unknown = _Unknowns()
    cpu = unknown.read("cpu_model", lambda: parse_cpuinfo(_text(root / "proc/cpuinfo")), "")
    if cpu is not None:
        if cpu.model is None:
            unknown.reasons["cpu_model"] = "no model name in /proc/cpuinfo"
        if cpu.sockets is None:
            unknown.reasons["sockets"] = "no physical id in /proc/cpuinfo"
        if cpu.cores is None:
            unknown.reasons["cores"] = "no core id in /proc/cpuinfo"
    else:
        for name in ("sockets", "cores", "threads"):
            unknown.reasons[name] = unknown.reasons["cpu_model"]
    sys_cpu = root / "sys/devices/system/cpu"
    uname = os.uname()
    quota, cgroup = _cpu_quota(root, unknown)
    virtualization = unknown.read(
        "virtualization", lambda: _virtualization(cpu.hypervisor if cpu else None), "")
    return HostPlatform(
        hostname=socket.gethostname(),
        cpu_model=cpu.model if cpu else None,
        sockets=cpu.sockets if cpu else None,
        cores=cpu.cores if cpu else None,
        threads=cpu.threads if cpu else None,
        numa_nodes=unknown.read("numa_nodes", lambda: _numa_nodes(root), "no NUMA nodes in /sys"),
        governor=unknown.read(
            "governor", lambda: _first(sys_cpu / "cpu0/cpufreq/scaling_governor"), ""),
        boost=unknown.read("boost", lambda: _boost(sys_cpu), ""),
        memory_bytes=unknown.read(
            "memory_bytes", lambda: parse_meminfo_total(_text(root / "proc/meminfo")),
            "no MemTotal in /proc/meminfo"),
        kernel=f"{uname.sysname} {uname.release} {uname.version} {uname.machine}",
        os_release=unknown.read("os_release", lambda: _os_release(root), "no name in os-release"),
        virtualization=virtualization,
        dmi_vendor=unknown.read(
            "dmi_vendor", lambda: _first(root / "sys/class/dmi/id/sys_vendor"), "empty"),
        dmi_product=unknown.read(
            "dmi_product", lambda: _first(root / "sys/class/dmi/id/product_name"), "empty"),
        cpu_quota_cores=quota,
        cpu_cgroup=cgroup,
        clock_source=unknown.read(
            "clock_source", lambda: _first(root / CLOCK_SOURCE), "empty"),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        tools=tuple(_tool_version(name, flag) for name, flag in TOOLS),
        interfaces=_interfaces(root),
        cpu_idle=unknown.read("cpu_idle", lambda: _cpu_idle(sys_cpu), ""),
        halt_poll_ns=unknown.read("halt_poll_ns", lambda: _halt_poll_ns(root, sys_cpu),
                                  "not a guest polling before it halts (cpuidle driver "
                                  "is not haltpoll)"),
        unknown=unknown.reasons,
    )


def _cpu_idle(sys_cpu: Path) -> str:
    """``DRIVER, governor GOVERNOR: STATE, ...``: the cpuidle driver, its governor and cpu0's
    idle states not disabled, shallowest first. How deep an idle CPU sleeps sets how long a
    request to an idle host waits for a CPU to wake: at one connection it can be most of the
    round trip."""
    idle = sys_cpu / "cpuidle"
    driver = _first(idle / "current_driver")
    governor_file = idle / "current_governor"
    if not governor_file.exists():
        governor_file = idle / "current_governor_ro"
    governor = _first(governor_file)
    states_dir = sys_cpu / "cpu0/cpuidle"
    states = sorted((entry for entry in states_dir.iterdir() if entry.name.startswith("state")),
                    key=lambda entry: int(entry.name.removeprefix("state") or 0))
    names = [_first(entry / "name") for entry in states
             if not (entry / "disable").exists() or _text(entry / "disable").strip() != "1"]
    return f"{driver}, governor {governor}: {', '.join(filter(None, names)) or 'none'}"


HALT_POLL: Final = "sys/module/haltpoll/parameters/guest_halt_poll_ns"
"""A KVM guest's halt polling, when its cpuidle driver is haltpoll."""


def _halt_poll_ns(root: Path, sys_cpu: Path) -> int | None:
    """How long an idle vCPU polls before it halts (a halted vCPU takes tens of µs to wake,
    on every request at low load); None when the cpuidle driver is not haltpoll."""
    if _first(sys_cpu / "cpuidle/current_driver") != "haltpoll":
        return None
    return int(_text(root / HALT_POLL).strip())


def _numa_nodes(root: Path) -> int | None:
    nodes = [p for p in (root / "sys/devices/system/node").iterdir()
             if p.name.startswith("node") and p.name[4:].isdigit()]
    return len(nodes) or None


def _boost(sys_cpu: Path) -> str:
    """Turbo/boost: ``cpufreq/boost`` (acpi-cpufreq, amd-pstate) or ``intel_pstate/no_turbo``."""
    boost = sys_cpu / "cpufreq/boost"
    if boost.exists():
        return "on" if _text(boost).strip() == "1" else "off"
    no_turbo = sys_cpu / "intel_pstate/no_turbo"
    if no_turbo.exists():
        return "off" if _text(no_turbo).strip() == "1" else "on"
    raise ValueError("no cpufreq/boost nor intel_pstate/no_turbo in /sys (no frequency "
                     "scaling exposed, as in most virtual machines)")


def _os_release(root: Path) -> str | None:
    for path in (root / "etc/os-release", root / "usr/lib/os-release"):
        if path.exists():
            return parse_os_release(_text(path))
    raise ValueError("no /etc/os-release nor /usr/lib/os-release")


def _virtualization(hypervisor_flag: bool | None) -> str | None:
    """``systemd-detect-virt``'s answer (``none`` on bare metal), else the cpuinfo flag."""
    tool = _which("systemd-detect-virt")
    if tool is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run([tool], capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_S, check=False)
            answer = done.stdout.strip()
            if answer:
                return answer
    if hypervisor_flag is None:
        raise ValueError("no systemd-detect-virt and no /proc/cpuinfo")
    return "a hypervisor (cpuinfo flag)" if hypervisor_flag else "none seen (no cpuinfo flag)"


def _cpu_quota(root: Path, unknown: _Unknowns) -> tuple[float | None, str | None]:
    """The tightest CPU quota over the agent's cgroup and its ancestors, in cores, and the
    cgroup that sets it (``v1 /lab/client1``); (None, the agent's cgroup) when none is set."""

    def read() -> tuple[float | None, str]:
        membership = parse_proc_cgroup(_text(root / "proc/self/cgroup"))
        if membership is None:
            raise ValueError("no cpu cgroup in /proc/self/cgroup")
        mount = cgroup_mount(_text(root / "proc/self/mounts"), membership.version)
        if mount is None:
            raise ValueError(f"the cgroup {membership.version} cpu hierarchy is not mounted")
        base = root / mount.lstrip("/")
        tightest: tuple[float, str] | None = None
        for path in cgroup_ancestry(membership.path):
            directory = base / path.lstrip("/")
            cores = _quota_of(directory, membership.version)
            if cores is not None and (tightest is None or cores < tightest[0]):
                tightest = (cores, path)
        if tightest is None:
            return None, f"{membership.version} {membership.path}"
        return tightest[0], f"{membership.version} {tightest[1]}"

    found = unknown.read("cpu_quota_cores", read, "")
    return (found[0], found[1]) if found else (None, None)


def _quota_of(directory: Path, version: str) -> float | None:
    """The quota one cgroup sets (None: none, or no such file: the root has none)."""
    if version == "v2":
        limit = directory / "cpu.max"
        return parse_cpu_max(_text(limit)) if limit.exists() else None
    quota = directory / "cpu.cfs_quota_us"
    if not quota.exists():
        if not directory.exists():
            raise ValueError(f"{directory} is not visible from this host")
        return None
    return parse_cfs_quota(_text(quota), _text(directory / "cpu.cfs_period_us"))


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return shutil.which(name, path=os.pathsep.join(SYSTEM_DIRS))


def _run(argv: list[str]) -> str:
    """A command's output (stdout, else stderr); ValueError naming its failure."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                              check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ValueError(f"{Path(argv[0]).name} gave no answer in {COMMAND_TIMEOUT_S:g} s")\
            from None
    if done.returncode != 0:
        said = version_line(done.stderr or done.stdout) or f"exit status {done.returncode}"
        raise ValueError(f"{Path(argv[0]).name} {' '.join(argv[1:])}: {said}")
    return done.stdout or done.stderr


def _tool_version(name: str, flag: str) -> ToolVersion:
    path = _which(name)
    if path is None:
        return ToolVersion(name, None, "not on PATH")
    try:
        line = version_line(_run([path, flag]))
    except (OSError, ValueError) as exc:
        return ToolVersion(name, None, str(exc))
    return ToolVersion(name, line, None if line else f"{name} {flag} printed nothing")


def _interfaces(root: Path) -> tuple[NetInterface, ...]:
    net = root / "sys/class/net"
    try:
        names = sorted(p.name for p in net.iterdir() if p.name != "lo")
    except OSError:
        return ()
    return tuple(_interface(net / name) for name in names)


def _interface(path: Path) -> NetInterface:
    unknown = _Unknowns()
    speed = unknown.read("speed_mbps", lambda: _speed(path), "")
    mtu = unknown.read("mtu", lambda: int(_text(path / "mtu")), "")
    ethtool = _which("ethtool")
    driver = unknown.read("driver", lambda: _driver(path, ethtool), "")
    offloads = unknown.read("offloads", lambda: _offloads(path.name, ethtool), "")
    return NetInterface(name=path.name, speed_mbps=speed, mtu=mtu, driver=driver,
                        offloads=offloads, unknown=unknown.reasons)


def _speed(path: Path) -> int:
    try:
        speed = int(_text(path / "speed"))
    except OSError as exc:
        raise ValueError(f"the link reports no speed ({exc.strerror}: down, or a virtual "
                         f"link)") from None
    if speed <= 0:
        raise ValueError("the link reports no speed (down, or a virtual link)")
    return speed


def _driver(path: Path, ethtool: str | None) -> str | None:
    if ethtool is not None:
        driver = parse_ethtool_driver(_run([ethtool, "-i", path.name]))
        if driver:
            return driver
    link = path / "device/driver"
    if link.exists():
        return link.readlink().name
    raise ValueError("no ethtool and no device driver link in /sys")


def _offloads(name: str, ethtool: str | None) -> dict[str, bool] | None:
    if ethtool is None:
        raise ValueError("ethtool is not installed")
    return parse_ethtool_features(_run([ethtool, "-k", name])) or None


def describe_server(probe: ServerProbe) -> ServerPlatform:
    """``INFO server`` and :data:`SERVER_CONFIG` over one connection, made as the load makes
    its own (same source address, same AUTH); a refused ``CONFIG`` (renamed or disabled, as
    managed services do) leaves those values unknown with the server's words."""
    endpoint = f"[{probe.address}]:{probe.port}" if ":" in probe.address \
        else f"{probe.address}:{probe.port}"
    unknown: dict[str, str] = {}
    info: dict[str, str] = {}
    config: dict[str, str] = {}
    try:
        replies = _ask_server(probe, endpoint)
    except (OSError, DriverError, ValueError) as exc:
        reason = exc.message if isinstance(exc, DriverError) else describe_os_error(exc)
        return ServerPlatform(endpoint, {}, {}, {"info": reason, "config": reason})
    info_reply, *config_replies = replies
    if isinstance(info_reply, bytes | str):
        info = parse_info(info_reply.decode() if isinstance(info_reply, bytes) else info_reply)
    else:
        unknown["info"] = f"INFO server answered {str(info_reply)[:120]}"
    for name, reply in zip(SERVER_CONFIG, config_replies, strict=True):
        if isinstance(reply, list) and len(reply) == 2:
            config[name] = _decoded(reply[1])
        elif isinstance(reply, list) and not reply:
            unknown[f"config.{name}"] = "this server has no such setting"
        else:
            unknown[f"config.{name}"] = f"CONFIG GET refused: {str(reply)[:120]}"
    return ServerPlatform(endpoint, info, config, unknown)


def _decoded(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _ask_server(probe: ServerProbe, endpoint: str) -> list[object]:
    family = socket.AF_INET6 if ":" in probe.address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(COMMAND_TIMEOUT_S)
        bind_source(sock, probe.source_address)
        sock.connect((probe.address, probe.port))
        auth = auth_command(probe.username, probe.password)
        payload = (auth or b"") + encode_command("INFO", "server") + b"".join(
            encode_command("CONFIG", "GET", name) for name in SERVER_CONFIG)
        count = len(SERVER_CONFIG) + 1 + (1 if auth else 0)
        replies = exchange(sock, payload, count, endpoint)
    if auth is not None:
        first, replies = replies[0], replies[1:]
        if first not in (b"OK", "OK"):
            raise ValueError(f"cannot authenticate to {endpoint}: {first}")
    return list(replies)
