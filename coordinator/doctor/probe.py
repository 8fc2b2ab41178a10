"""Gathering `coord doctor`'s facts on every host over SSH; the verdicts are
:mod:`coordinator.doctor.verdicts`.

Every probe is a short Python program run with the host's own interpreter through
:meth:`SSHHost.run` (argv only, quoted by ``shlex.join``), so nothing is installed and nothing
stays behind. TCP forwarding is checked the way the agent link uses it: a listener on the
host's loopback, reached through a ``direct-tcpip`` channel.
"""

from __future__ import annotations

import contextlib
import json

from coordinator.core.errors import AgentError, HostError
from coordinator.doctor.verdicts import HostFacts, endpoints, needed_tools
from coordinator.inventory.schema import Host, Inventory
from coordinator.remote.deploy import DeployOptions, connect, ssh_defaults
from coordinator.remote.fanout import FleetResult, ProgressView, StageReporter, fan_out
from coordinator.remote.ssh import CHANNEL_OPEN_TIMEOUT, SSHHost

REACH_TIMEOUT = 5.0
"""Seconds a client's TCP connection to the target may take."""
LISTEN_TIMEOUT = CHANNEL_OPEN_TIMEOUT + 5.0
"""Seconds the forwarding probe's listener waits for the tunnel before it exits anyway."""

_FACTS_SCRIPT = """\
import json, os, shutil, sys
path = os.path.expanduser(sys.argv[1])
while not os.path.isdir(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
memory = None
try:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                memory = int(line.split()[1]) * 1024
except OSError:
    pass
disk = os.statvfs(path)
print(json.dumps({"python": list(sys.version_info[:3]), "memory": memory,
                  "disk": disk.f_bavail * disk.f_frsize, "disk_path": path,
                  "tools": {tool: shutil.which(tool) is not None for tool in sys.argv[2:]}}))
"""
"""argv: cache_dir tool...: Python version, available memory, free disk, tools found."""

_LISTEN_SCRIPT = """\
import socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
server.settimeout(float(sys.argv[1]))
print(server.getsockname()[1], flush=True)
try:
    server.accept()[0].close()
except OSError:
    pass
"""
"""argv: timeout. Prints a loopback port, accepts one connection (or gives up), exits."""

_REACH_SCRIPT = """\
import socket, sys
for endpoint in sys.argv[2:]:
    address, _, port = endpoint.rpartition(":")
    try:
        socket.create_connection((address.strip("[]"), int(port)), float(sys.argv[1])).close()
        print(endpoint + " ok")
    except OSError as exc:
        print(endpoint + " " + (exc.strerror or str(exc) or type(exc).__name__).lower())
"""
"""argv: timeout endpoint...: one line per endpoint, ``ok`` or why the connection failed."""


def gather(inventory: Inventory, hosts: list[Host], options: DeployOptions,
           view: ProgressView | None = None) -> FleetResult[HostFacts]:
    """Every host's facts; an unreachable host is a fact (``ssh_error``), not a failure."""
    defaults = ssh_defaults(inventory, options)
    by_name = {host.name: host for host in hosts}

    def one(name: str, report: StageReporter) -> HostFacts:
        host = by_name[name]
        try:
            ssh = connect(host, defaults, report)
        except HostError as exc:
            return HostFacts(ssh_error=exc.reason)
        with ssh:
            return _facts(inventory, host, ssh, report)

    return fan_out(list(by_name), one, view)


def _facts(inventory: Inventory, host: Host, ssh: SSHHost, report: StageReporter) -> HostFacts:
    report("python, memory, disk, tools")
    try:
        stdout, _ = ssh.run([ssh.python, "-I", "-c", _FACTS_SCRIPT, inventory.agent.cache_dir,
                             *needed_tools(inventory, host)])
        found = json.loads(stdout.strip().splitlines()[-1])
    except (HostError, ValueError, IndexError) as exc:
        reason = exc.reason if isinstance(exc, HostError) else f"unreadable answer: {exc}"
        return HostFacts(python_error=reason, sftp_error=_sftp_error(ssh))
    report("sftp")
    sftp_error = _sftp_error(ssh)
    report("tcp forwarding")
    forwarding_error = _forwarding_error(ssh)
    reach: dict[str, str | None] = {}
    if "client" in host.roles:
        report("reaching the target")
        reach = _reach(ssh, endpoints(inventory))
    return HostFacts(
        forwarding_error=forwarding_error,
        sftp_error=sftp_error,
        python=tuple(int(part) for part in found["python"]),
        free_memory=found["memory"],
        free_disk=found["disk"],
        disk_path=found["disk_path"],
        tools={str(tool): bool(ok) for tool, ok in found["tools"].items()},
        reach=reach,
    )


def _sftp_error(ssh: SSHHost) -> str | None:
    try:
        ssh.sftp()
    except HostError as exc:
        return exc.reason
    return None


def _forwarding_error(ssh: SSHHost) -> str | None:
    process = ssh.start([ssh.python, "-I", "-c", _LISTEN_SCRIPT, repr(LISTEN_TIMEOUT)])
    try:
        line = process.readline(LISTEN_TIMEOUT)
        if line is None or not line.strip().isdigit():
            return f"the probe listener did not start: {process.stderr().strip() or line}"
        try:
            channel = ssh.open_channel(int(line))
        except AgentError as exc:
            return exc.reason
        channel.close()
        with contextlib.suppress(TimeoutError, OSError, EOFError):
            process.wait(LISTEN_TIMEOUT)
        return None
    except TimeoutError:
        return "the probe listener printed no port"
    finally:
        process.close()


def _reach(ssh: SSHHost, targets: list[str]) -> dict[str, str | None]:
    stdout, _ = ssh.run([ssh.python, "-I", "-c", _REACH_SCRIPT, repr(REACH_TIMEOUT), *targets],
                        timeout=REACH_TIMEOUT * len(targets) + 30)
    reach: dict[str, str | None] = dict.fromkeys(targets, "no answer")
    for line in stdout.splitlines():
        endpoint, _, outcome = line.partition(" ")
        if endpoint in reach:
            reach[endpoint] = None if outcome == "ok" else outcome
    return reach
