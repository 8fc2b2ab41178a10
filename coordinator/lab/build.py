"""Building a lab: the steps ``coord lab up`` carries out, in order, for a validated spec.

The caller (``coordinator.lab.api.lab_up``) has checked the system and removed any remains; on a
failure it tears down whatever :class:`Builder` made, using ``Builder.step`` in its message.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from coordinator.core.errors import LabError
from coordinator.lab import certs as lab_certs
from coordinator.lab import cgroups as lab_cgroups
from coordinator.lab import network as lab_network
from coordinator.lab import system as sysio
from coordinator.lab.config_files import (
    lab_inventories,
    model_inventory_path,
    redis_conf_text,
    render_inventory,
    render_model_inventory,
    sshd_config_text,
)
from coordinator.lab.model_server import ModelServerStarter
from coordinator.lab.plan import (
    CPU_PERIOD_US,
    MODEL_SERVER_PORT,
    REDIS_PORT,
    REDIS_TLS_PORT,
    SSH_PORT,
    LabHost,
    LabPaths,
    LabSpec,
    Report,
    bridge_address,
    bridge_name,
    cgroup_group,
    cluster_ports,
    cpu_quota_us,
    home_dir,
    plan_hosts,
    redis_user,
    tls_server_name,
    user_comment,
    veth_name,
)
from coordinator.lab.state import LabState

REDIS_PASSWORD_BYTES = 32
"""Random bytes in the lab's Redis password (43 URL-safe characters)."""
SSHD_PRIVSEP_DIR = Path("/run/sshd")
"""sshd refuses to start without its privilege separation directory."""


class Builder:
    """Carries out the plan step by step; ``step`` names the one running (for errors)."""

    def __init__(
        self,
        spec: LabSpec,
        paths: LabPaths,
        tools: dict[str, str],
        inventory: Path,
        report: Report,
    ) -> None:
        self.spec, self.paths, self.tools = spec, paths, tools
        self.inventory, self.report = inventory, report
        self.hosts = plan_hosts(spec)
        self.state = LabState(spec=spec, hosts=self.hosts, inventories=lab_inventories(spec,
                                                                                     inventory))
        self.step = "starting"

    def _begin(self, step: str) -> None:
        self.step = step
        self.report(step)

    def build(self) -> None:
        spec, paths = self.spec, self.paths
        self.step = "creating the state directory"
        sysio.make_dir(paths.root, 0o755)
        sysio.write_state(paths, self.state)
        sysio.make_dir(paths.keys, 0o700)
        if not SSHD_PRIVSEP_DIR.is_dir():
            sysio.make_dir(SSHD_PRIVSEP_DIR, 0o755)
        prefix, ip = spec.network.prefixlen, self.tools["ip"]
        bridge = bridge_name(spec.name)
        self._begin(f"bridge {bridge} {bridge_address(spec)}/{prefix}")
        sysio.run([ip, "link", "add", bridge, "type", "bridge"])
        sysio.run([ip, "addr", "add", f"{bridge_address(spec)}/{prefix}", "dev", bridge])
        sysio.run([ip, "link", "set", bridge, "up"])
        for host in self.hosts:
            self._network(host, bridge, prefix)
        for host in self.hosts:
            self._account(host)
        self.step = "writing known_hosts"
        entries = []
        for host in self.hosts:
            kind, key = paths.host_key(host.name).with_suffix(".pub").read_text().split()[:2]
            entries.append(f"{host.address} {kind} {key}\n")
        sysio.write_file(paths.known_hosts, "".join(entries))
        for host in self.hosts:
            self._sshd(host)
        if spec.client_cpu is not None or spec.server_cpu is not None:
            self._cgroups()
        server = next(host for host in self.hosts if host.role == "server")
        self._redis(server)
        self._redis_cgroup(server)
        if spec.cluster:
            self._cluster(server)
        if spec.model_server:
            self._model_server(server)
        self.step = "writing the inventory"
        self.state = replace(self.state, complete=True)
        sysio.write_state(paths, self.state)
        sysio.write_file(self.inventory, render_inventory(spec, self.hosts))
        self.report(f"inventory {self.inventory}")
        if spec.model_server:
            model_inventory = model_inventory_path(self.inventory)
            sysio.write_file(model_inventory, render_model_inventory(spec, self.hosts))
            self.report(f"the model server's inventory {model_inventory}")

    def _network(self, host: LabHost, bridge: str, prefix: int) -> None:
        ns, veth, ip = host.namespace, veth_name(self.spec.name, host.name), self.tools["ip"]
        self._begin(f"namespace {ns} {host.address}")
        sysio.run([ip, "netns", "add", ns])
        sysio.run([ip, "-n", ns, "link", "set", "lo", "up"])
        sysio.run([ip, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        sysio.run([ip, "link", "set", veth, "master", bridge, "up"])
        sysio.run([ip, "-n", ns, "addr", "add", f"{host.address}/{prefix}", "dev", "eth0"])
        sysio.run([ip, "-n", ns, "link", "set", "eth0", "up"])

    def _account(self, host: LabHost) -> None:
        paths, keygen = self.paths, self.tools["ssh-keygen"]
        self._begin(f"user {host.user} and keys of {host.name}")
        sysio.make_dir(paths.host_dir(host.name), 0o755)
        for key, comment in (
            (paths.host_key(host.name), f"{host.name}@{self.spec.name}-lab"),
            (host.key_file, f"{host.user}@{self.spec.name}-lab"),
        ):
            sysio.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)])
        public = host.key_file.with_suffix(".pub").read_text()
        sysio.write_file(paths.authorized_keys(host.name), public)
        sysio.write_file(paths.sshd_config(host.name), sshd_config_text(self.spec, host))
        sysio.run(
            [
                self.tools["useradd"],
                "--create-home",
                "--home-dir", str(home_dir(host.user)),
                "--shell", "/bin/bash",
                "--comment", user_comment(self.spec.name),
                "--user-group",
                "--password", "*",  # no password, but not locked: sshd accepts its key
                host.user,
            ]
        )  # fmt: skip

    def _sshd(self, host: LabHost) -> None:
        paths = self.paths
        self._begin(f"sshd on {host.name} {host.address}:{SSH_PORT}")
        sshd = lab_cgroups.visible_cgroups_argv(lab_cgroups.cpu_cgroup_root(), [
            self.tools["sshd"],
            "-f", str(paths.sshd_config(host.name)),
            "-E", str(paths.sshd_log(host.name)),
        ])  # fmt: skip
        sysio.start_daemon([self.tools["ip"], "netns", "exec", host.namespace, *sshd])
        pidfile = paths.sshd_pidfile(host.name)

        def listening() -> bool:
            pid = sysio.read_pidfile(pidfile)
            return pid is not None and lab_network.tcp_listening(pid, host.address, SSH_PORT)

        _wait_for_daemon(listening, f"sshd on {host.name}", paths.sshd_log(host.name))

    def _cgroups(self) -> None:
        """A CPU cgroup per host with a quota (``--client-cpu``, ``--server-cpu``), holding its
        sshd: everything started over SSH on the host inherits it."""
        root = lab_cgroups.cpu_cgroup_root()
        if root is None:
            option = "--client-cpu" if self.spec.client_cpu is not None else "--server-cpu"
            raise LabError(f"{option} needs the cgroup cpu controller, which is not mounted")
        cgroups: dict[str, Path] = {}
        for host in self.hosts:
            fraction = self.spec.cpu_quota(host.role)
            if fraction is None:
                continue
            quota = cpu_quota_us(fraction)
            self.step = f"cgroup of {host.name}"
            try:
                cgroup = lab_cgroups.make_cpu_cgroup(
                    root, cgroup_group(self.spec.name), host.name, quota, CPU_PERIOD_US
                )
            except OSError as exc:
                where = root.path / cgroup_group(self.spec.name)
                raise LabError(
                    f"cannot make a {root.version} CPU cgroup under {where}: {exc}"
                ) from exc
            cgroups[host.name] = cgroup
            self.state = replace(self.state, cgroups=dict(cgroups))
            sysio.write_state(self.paths, self.state)
            pid = sysio.read_pidfile(self.paths.sshd_pidfile(host.name))
            if pid is None:
                raise LabError(f"sshd of {host.name} has no pid file")
            lab_cgroups.add_to_cgroup(cgroup, pid)
            self.report(f"cgroup {cgroup} cpu {fraction:g} ({quota}/{CPU_PERIOD_US} us)")

    def _redis_cgroup(self, server: LabHost) -> None:
        """redis-server joins the server host's cgroup (``--server-cpu``), like its sshd."""
        cgroup = self.state.cgroups.get(server.name)
        if cgroup is None:
            return
        pid = sysio.read_pidfile(self.paths.redis_pidfile)
        if pid is None:
            raise LabError("redis-server has no pid file")
        self.step = f"redis-server into the cgroup of {server.name}"
        lab_cgroups.add_to_cgroup(cgroup, pid)
        self.report(f"redis-server (pid {pid}) in cgroup {cgroup}")

    def _redis(self, server: LabHost) -> None:
        """redis-server as an unprivileged user of its own, with a password.

        The password is drawn here and written twice, never on a command line: in redis.conf
        (mode 600, the redis user's) for the server, and in the state directory (mode 600,
        root's) as the inventory's ``password_file`` for coord. So the lab exercises the
        authenticated path, and the inventory it writes holds no secret.
        """
        paths, bridge = self.paths, bridge_name(self.spec.name)
        user = redis_user(self.spec.name)
        self._begin(f"user {user} and the password of redis-server")
        sysio.run(
            [
                self.tools["useradd"],
                "--system",
                "--no-create-home",
                "--home-dir", str(paths.redis_dir),
                "--shell", "/usr/sbin/nologin",
                "--comment", user_comment(self.spec.name),
                "--user-group",
                user,
            ]
        )  # fmt: skip
        password = secrets.token_urlsafe(REDIS_PASSWORD_BYTES)
        sysio.write_file(paths.redis_password, f"{password}\n", 0o600)
        sysio.make_dir(paths.redis_dir, 0o700)
        sysio.write_file(paths.redis_conf, redis_conf_text(password), 0o600)
        sysio.give_to(paths.redis_dir, user)
        sysio.give_to(paths.redis_conf, user)
        tls_options = self._tls(server, user) if self.spec.tls else []
        self._begin(f"redis-server on {server.name} {server.address}:{REDIS_PORT} as {user}")
        sysio.start_daemon(
            [
                self.tools["ip"], "netns", "exec", server.namespace,
                self.tools["setpriv"], f"--reuid={user}", f"--regid={user}", "--clear-groups",
                self.tools["redis-server"], str(paths.redis_conf),
                "--bind", server.address,
                "--port", str(REDIS_PORT),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "yes",
                "--pidfile", str(paths.redis_pidfile),
                "--dir", str(paths.redis_dir),
                "--logfile", str(paths.redis_log),
                *tls_options,
            ]
        )  # fmt: skip
        _wait_for_daemon(
            lambda: lab_network.redis_ping(server.address, REDIS_PORT, device=bridge,
                                     password=password),
            "redis-server to answer PING",
            paths.redis_log,
        )

    def _tls(self, server: LabHost, user: str) -> list[str]:
        """A CA and certificates (``--tls``); redis-server's TLS options.

        The client's key is a throw-away readable by every lab user (the load runs as the
        client hosts' users); the server's key is the redis user's only."""
        paths = self.paths
        self._begin(f"TLS certificates for {server.address} and {tls_server_name(self.spec.name)}")
        made = lab_certs.make_certificates(self.spec.name, server.address,
                                           tls_server_name(self.spec.name))
        sysio.make_dir(paths.tls_dir, 0o755)
        for name, pem in (("ca.crt", made.ca_cert), ("client.crt", made.client_cert),
                          ("client.key", made.client_key)):
            sysio.write_file(paths.tls_dir / name, pem.decode(), 0o644)
        for name, pem in (("server.crt", made.server_cert), ("server.key", made.server_key)):
            sysio.write_file(paths.redis_dir / name, pem.decode(), 0o600)
            sysio.give_to(paths.redis_dir / name, user)
        return [
            "--tls-port", str(REDIS_TLS_PORT),
            "--tls-cert-file", str(paths.redis_dir / "server.crt"),
            "--tls-key-file", str(paths.redis_dir / "server.key"),
            "--tls-ca-cert-file", str(paths.tls_dir / "ca.crt"),
            "--tls-auth-clients", "optional",
        ]  # fmt: skip

    def _cluster(self, server: LabHost) -> None:
        """``--cluster N``: N cluster nodes as the redis user, the lab's password, slots
        spread by ``redis-cli --cluster create`` (the password through REDISCLI_AUTH, never
        on a command line)."""
        paths, bridge = self.paths, bridge_name(self.spec.name)
        user = redis_user(self.spec.name)
        password = sysio.read_secret(paths.redis_password) or ""
        ports = cluster_ports(self.spec)
        for port in ports:
            node_dir = paths.cluster_dir(port)
            sysio.make_dir(node_dir, 0o700)
            sysio.give_to(node_dir, user)
            self._begin(f"redis cluster node on {server.name} {server.address}:{port}")
            sysio.start_daemon(
                [
                    self.tools["ip"], "netns", "exec", server.namespace,
                    self.tools["setpriv"], f"--reuid={user}", f"--regid={user}",
                    "--clear-groups",
                    self.tools["redis-server"], str(paths.redis_conf),
                    "--bind", server.address,
                    "--port", str(port),
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--save", "",
                    "--appendonly", "no",
                    "--daemonize", "yes",
                    "--pidfile", str(node_dir / "redis.pid"),
                    "--dir", str(node_dir),
                    "--logfile", str(node_dir / "redis.log"),
                ]
            )  # fmt: skip
            _wait_for_daemon(
                functools.partial(lab_network.redis_ping, server.address, port, device=bridge,
                                  password=password),
                f"cluster node {port} to answer PING",
                node_dir / "redis.log",
            )
        self._begin(f"redis-cli --cluster create ({len(ports)} primaries)")
        sysio.run(
            [self.tools["redis-cli"], "--cluster", "create",
             *(f"{server.address}:{port}" for port in ports), "--cluster-yes"],
            env={"REDISCLI_AUTH": password},
        )
        _wait_for_daemon(
            lambda: all(lab_network.cluster_ok(server.address, port, device=bridge,
                                               password=password) for port in ports),
            "the cluster to be ok (cluster_state:ok on every node)",
            paths.cluster_dir(ports[0]) / "redis.log",
        )


    def _model_server(self, server: LabHost) -> None:
        """``--model-server``: the models, the reference data into Redis, then Gunicorn as the
        server host's user (coordinator.lab.model_server)."""
        starter = ModelServerStarter(self.spec, self.paths, self.tools,
                                     bridge_name(self.spec.name))
        self._begin("the model server's models (training the fraud model, building the "
                    "classifier) and the reference data into redis-server")
        starter.build_models(server)
        self._begin(f"the model server on {server.name} {server.address}:{MODEL_SERVER_PORT} "
                    f"as {server.user} ({self.spec.model_workers} workers, "
                    f"{self.spec.model_threads} threads, "
                    f"{self.spec.model_intra_op_threads} intra-op threads)")
        interpreter = starter.start(server, self.state.cgroups.get(server.name))
        self.report(f"model server up (python {interpreter.executable})")


def _wait_for_daemon(ready: Callable[[], bool], what: str, log: Path) -> None:
    """Wait for a daemon we started; on a time-out the error carries its log's last line.

    A daemon that dies at start-up says why only in its log, not on the command line.
    """
    try:
        sysio.wait_until(ready, timeout=sysio.START_TIMEOUT, what=what)
    except LabError as exc:
        line = sysio.last_log_line(log)
        raise LabError(f"{exc}{f' ({line})' if line else ''}") from None
