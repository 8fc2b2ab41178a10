"""Put the agent on one host and start it: connect, probe Python, ship the bundle, start.

Each step is a function of one host; :mod:`coordinator.remote.fleet` runs them on every host in
parallel. Bundles are built once per distinct interpreter (hosts alike share one) and cached
both here and on the hosts, so a re-deploy with nothing changed transfers nothing.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from coordinator.core.errors import AgentError, last_line
from coordinator.inventory.schema import Host, Inventory, SSHDefaults
from coordinator.remote.agent_link import (
    AgentLink,
    ReadyInfo,
    new_token,
    parse_ready_line,
    startup_line,
)
from coordinator.remote.bundle import (
    Bundle,
    DeployResult,
    Interpreter,
    build_bundle,
    ensure_bundle,
    probe_interpreter,
)
from coordinator.remote.fanout import StageReporter
from coordinator.remote.ssh import RemoteProcess, SSHHost

AGENT_READY_TIMEOUT = 120.0
"""Seconds from starting the agent process to its ready line: the agent only imports its
modules (about 0.5 s of a core) before printing it, but a host held to a CPU quota may take
far longer. On 2026-11-29 a lab host held to a quarter of a core imported the agent in 23 to
52 s on this project's VM, where a throttled process's imports ran 10 to 25 times slower
than unthrottled; 30 s failed runs there. As long as the bundle upload's limit."""


def default_bundle_cache() -> Path:
    """The operator's cache root for bundles (``$XDG_CACHE_HOME/coord``; bundles go in its
    ``bundles/``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "coord"


@dataclass(frozen=True)
class DeployOptions:
    """What a deployment may do beyond the inventory."""

    wheelhouse: Path | None = None
    """Build bundles from this directory of wheels only (no package registry)."""
    accept_new_host_keys: bool = False
    """Record unknown host keys, whatever the inventory's policy says."""
    bundle_cache: Path | None = None
    """Local bundle cache; default :func:`default_bundle_cache`."""


@dataclass(frozen=True)
class Deployment:
    """What deploying to one host found and did."""

    interpreter: Interpreter
    bundle: Bundle
    result: DeployResult


class AgentProcess(Protocol):
    """What the fleet needs of a started agent's process: its stdin is its lifeline."""

    def close_stdin(self) -> None: ...
    def wait(self, timeout: float) -> int: ...
    def close(self) -> None: ...


class HostConnection(Protocol):
    """The way to a host that carries an agent's process and link (an SSH connection)."""

    def close(self) -> None: ...


@dataclass
class PlacedAgent:
    """An agent a :class:`Transport` started on a host, with an authenticated link to it."""

    connection: HostConnection
    deployment: Deployment | None
    """What was shipped to the host; None when nothing was (an agent run from this checkout)."""
    process: AgentProcess
    link: AgentLink


class Transport(Protocol):
    """How a fleet puts an agent on a host and links to it: over SSH in production
    (:class:`SSHTransport`); tests start agents on this machine behind the same seam."""

    def place(self, host: Host, inventory: Inventory, report: StageReporter) -> PlacedAgent:
        """Start an agent for ``host`` and link to it; leave nothing running on failure."""
        ...


@dataclass
class StartedAgent:
    """An agent process on a host with an authenticated link to it."""

    process: RemoteProcess
    ready: ReadyInfo
    link: AgentLink


def ssh_defaults(inventory: Inventory, options: DeployOptions) -> SSHDefaults:
    """The inventory's SSH defaults with command-line overrides applied."""
    if options.accept_new_host_keys:
        return inventory.ssh.model_copy(update={"host_key_policy": "accept-new"})
    return inventory.ssh


def connect(host: Host, defaults: SSHDefaults, report: StageReporter) -> SSHHost:
    """An open SSH connection to ``host`` (host key verified)."""
    report("connecting", f"{host.address}:{host.port}")
    return SSHHost(host, defaults).connect()


def deploy(ssh: SSHHost, options: DeployOptions, remote_cache: str,
           report: StageReporter) -> Deployment:
    """Make sure the host holds the agent bundle for its interpreter.

    Hosts with the same interpreter share one build: ``build_bundle`` caches by content and
    serializes concurrent builds of the same bundle.
    """
    report("checking python", ssh.python)
    interpreter = probe_interpreter(ssh)
    report("building bundle", interpreter.describe())
    bundle = build_bundle(interpreter, options.bundle_cache or default_bundle_cache(),
                          options.wheelhouse, host=ssh.name)
    report("uploading", f"bundle {bundle.hash[:12]} ({bundle.size // 1024} KiB)")
    result = ensure_bundle(ssh, bundle, remote_cache)
    return Deployment(interpreter, bundle, result)


def host_state_dir(cache_dir: str, host: str) -> str:
    """Where the agent of inventory host ``host`` keeps its pid file and log, on that host.

    Keyed by the inventory name, not by the host's own idea of its name: hosts that share a
    home directory (NFS homes, or one machine under two names) would otherwise share one pid
    file and one log, and ``coord agents stop`` would stop only the agent that wrote last.
    """
    return posixpath.join(cache_dir, "hosts", host)


def agent_command(deployment: Deployment, python: str, watchdog: float,
                  state_dir: str) -> list[str]:
    """The argv that starts the agent from its unpacked bundle.

    ``-I`` keeps the host's environment, user site and working directory out of ``sys.path``;
    the bundle's directories are put first by the one-line program itself, so nothing on the
    host can shadow the agent or its dependencies. The umask keeps what the agent writes
    (``__pycache__`` in the bundle, its state directory) to its own user: the next deploy
    refuses a bundle that others may write.
    """
    root = deployment.result.remote_dir
    paths = [root, f"{root}/site"]
    program = (
        f"import os, sys; os.umask(0o077); sys.path[:0] = {paths!r}; "
        "from agent.__main__ import run; run(sys.argv[1:])"
    )
    return [
        python, "-I", "-c", program, "serve",
        "--watchdog", repr(watchdog),
        "--state-dir", state_dir,
        "--bundle-hash", deployment.bundle.hash,
    ]  # fmt: skip


def start_agent(ssh: SSHHost, deployment: Deployment, watchdog: float, state_dir: str,
                report: StageReporter) -> StartedAgent:
    """Start the agent, read its ready line, and open the authenticated RPyC link to it.

    The token travels on the agent's standard input, never in its argv. If anything fails
    after the process started, the process is stopped before the error leaves.
    """
    report("starting agent")
    token = new_token()
    process = ssh.start(
        agent_command(deployment, ssh.python, watchdog, state_dir),
        startup_line(token).decode("utf-8"),
    )
    try:
        line = _ready_line(ssh.name, process)
        ready = parse_ready_line(line, ssh.name)
        report("linking", f"agent pid {ready.pid}, port {ready.port}")
        channel = ssh.open_channel(ready.port)
        link = AgentLink.connect(ssh.name, channel, token)
    except BaseException:
        process.close()
        raise
    return StartedAgent(process, ready, link)


class SSHTransport:
    """Connect over SSH (host key verified), ship the bundle, start the agent, link through an
    SSH-forwarded channel."""

    def __init__(self, options: DeployOptions) -> None:
        self.options = options

    def place(self, host: Host, inventory: Inventory, report: StageReporter) -> PlacedAgent:
        ssh = connect(host, ssh_defaults(inventory, self.options), report)
        agent = inventory.agent
        try:
            deployment = deploy(ssh, self.options, agent.cache_dir, report)
            started = start_agent(ssh, deployment, agent.watchdog,
                                  host_state_dir(agent.cache_dir, host.name), report)
        except BaseException:
            ssh.close()
            raise
        return PlacedAgent(ssh, deployment, started.process, started.link)


def _ready_line(host: str, process: RemoteProcess) -> str:
    try:
        line = process.readline(AGENT_READY_TIMEOUT)
    except TimeoutError:
        raise AgentError(
            host, f"the agent printed nothing within {AGENT_READY_TIMEOUT:g}s of starting"
        ) from None
    if line is None:
        reason = last_line(process.stderr()) or "no error output"
        raise AgentError(host, f"the agent exited before it was ready: {reason}")
    return line

