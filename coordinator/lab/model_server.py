"""``coord lab up --model-server``: the model server on the lab's server host.

Gunicorn serving :mod:`coordinator.modelserver.app`, in the server host's namespace, as the
server host's (unprivileged) user, listening on the server's lab address. Its models are made
at setup by ``python -m coordinator.modelserver.build`` (as root, with the coordinator's own
interpreter), which also loads the fraud reference data into the lab's Redis.

The service runs with the coordinator's own Python environment, since lab hosts share this
machine's file system. When the lab user cannot run that interpreter (one under ``/root``, as
pyenv puts it), the system's ``python3`` of the same version runs it with the coordinator's
site-packages and source on PYTHONPATH. Teardown needs nothing of its own: every process of a
lab user or in a lab namespace is stopped, and the files live in the state directory.
"""

from __future__ import annotations

import site
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

import coordinator
from coordinator.core.errors import LabError, last_line
from coordinator.lab import cgroups as lab_cgroups
from coordinator.lab import network as lab_network
from coordinator.lab import system as sysio
from coordinator.lab.plan import (
    FRAUD_CUSTOMERS,
    MODEL_SERVER_PORT,
    REDIS_PORT,
    LabHost,
    LabPaths,
    LabSpec,
    home_dir,
)
from coordinator.modelserver import MODEL_FILES, REQUIRED_MODULES
from coordinator.modelserver.settings import ServerSettings
from coordinator.usecases import require_modules

GUNICORN_APP = "coordinator.modelserver.app:create_app()"
BUILD_TIMEOUT = 300.0
"""Seconds the models' build (training, export, the reference data into Redis) may take."""
READY_TIMEOUT = 120.0
"""Seconds the workers may take to load their models and answer ``GET /health``."""
WORKER_TIMEOUT = 120
"""Gunicorn's worker time-out: a request longer than this on a saturated host is killed."""
SYSTEM_PYTHON = Path("/usr/bin/python3")
HEALTH_PATH = "/health"


def require_extra() -> None:
    """One line naming the ``model-server`` extra when any of its modules is missing."""
    require_modules("coord lab up --model-server", *REQUIRED_MODULES)


@dataclass(frozen=True)
class Interpreter:
    """A Python that runs the service; ``pythonpath`` is set when it is not the venv's own."""

    executable: str
    pythonpath: str | None = None


def interpreters() -> list[Interpreter]:
    """The coordinator's own interpreter, then the system's python3 of the same version with
    the coordinator's packages on PYTHONPATH."""
    own = Interpreter(sys.executable)
    source = str(Path(coordinator.__file__).resolve().parents[1])
    borrowed = Interpreter(str(SYSTEM_PYTHON),
                           ":".join([source, *site.getsitepackages()]))
    return [own, borrowed] if SYSTEM_PYTHON.exists() else [own]


def service_environ(interpreter: Interpreter, user: str,
                    settings: ServerSettings) -> dict[str, str]:
    """The service's whole environment: nothing of root's besides what is named here."""
    environ = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home_dir(user)),
               "LANG": "C.UTF-8", **settings.environ()}
    if interpreter.pythonpath is not None:
        environ["PYTHONPATH"] = interpreter.pythonpath
    return environ


def gunicorn_argv(interpreter: Interpreter, spec: LabSpec, paths: LabPaths,
                  address: str) -> list[str]:
    """Gunicorn's command line: daemonized, its pid file and log in the model directory."""
    return [
        interpreter.executable, "-m", "gunicorn",
        "--daemon",
        "--pid", str(paths.model_dir / "gunicorn.pid"),
        "--error-logfile", str(paths.model_dir / "gunicorn.log"),
        "--capture-output",
        "--chdir", str(paths.model_dir),
        "--bind", f"{address}:{MODEL_SERVER_PORT}",
        "--workers", str(spec.model_workers),
        "--threads", str(spec.model_threads),
        "--timeout", str(WORKER_TIMEOUT),
        GUNICORN_APP,
    ]  # fmt: skip


class ModelServerStarter:
    """The steps, in order; ``lab.build.Builder`` calls :meth:`start` after Redis is up."""

    def __init__(self, spec: LabSpec, paths: LabPaths, tools: dict[str, str],
                 bridge: str) -> None:
        self.spec, self.paths, self.tools, self.bridge = spec, paths, tools, bridge

    def as_user(self, user: str) -> list[str]:
        return [self.tools["setpriv"], f"--reuid={user}", f"--regid={user}", "--clear-groups"]

    def build_models(self, server: LabHost) -> None:
        """The models (as root, the coordinator's interpreter) and the reference data."""
        directory = self.paths.model_dir
        sysio.make_dir(directory, 0o700)
        sysio.run([sys.executable, "-m", "coordinator.modelserver.build", str(directory),
                   "--customers", str(FRAUD_CUSTOMERS),
                   "--redis", f"{server.address}:{REDIS_PORT}",
                   "--password-file", str(self.paths.redis_password)],
                  timeout=BUILD_TIMEOUT)
        password = sysio.read_secret(self.paths.redis_password) or ""
        sysio.write_file(directory / "redis.password", f"{password}\n", 0o600)
        for name in [*MODEL_FILES.values(), "redis.password"]:
            sysio.give_to(directory / name, server.user)
        sysio.give_to(directory, server.user)

    def settings(self, server: LabHost) -> ServerSettings:
        return ServerSettings(
            model_dir=self.paths.model_dir, redis_host=server.address, redis_port=REDIS_PORT,
            redis_password_file=self.paths.model_dir / "redis.password",
            intra_op_threads=self.spec.model_intra_op_threads)

    def interpreter(self, server: LabHost) -> Interpreter:
        """The first interpreter that imports the service as the server host's user."""
        probe = "import gunicorn, coordinator.modelserver.app"
        failures = []
        for candidate in interpreters():
            result = sysio.run(
                [*self.as_user(server.user), candidate.executable, "-c", probe], check=False,
                timeout=BUILD_TIMEOUT,
                env=service_environ(candidate, server.user, self.settings(server)))
            if result.returncode == 0:
                return candidate
            failures.append(f"{candidate.executable}: {last_line(result.stderr)}")
        raise LabError(f"no Python can run the model server as {server.user}: "
                       f"{'; '.join(failures)}")

    def start(self, server: LabHost, cgroup: Path | None) -> Interpreter:
        interpreter = self.interpreter(server)
        sysio.start_daemon(
            [self.tools["ip"], "netns", "exec", server.namespace, *self.as_user(server.user),
             *gunicorn_argv(interpreter, self.spec, self.paths, server.address)],
            env=service_environ(interpreter, server.user, self.settings(server)))
        try:
            sysio.wait_until(self.answers(server), timeout=READY_TIMEOUT,
                             what=f"the model server to answer GET {HEALTH_PATH}")
        except LabError as exc:
            line = sysio.last_log_line(self.paths.model_dir / "gunicorn.log")
            raise LabError(f"{exc}{f' ({line})' if line else ''}") from None
        pid = self.pid()
        if cgroup is not None and pid is not None:  # workers Gunicorn forks later inherit it
            master = psutil.Process(pid)
            for process in [master, *master.children(recursive=True)]:
                lab_cgroups.add_to_cgroup(cgroup, process.pid)
        return interpreter

    def pid(self) -> int | None:
        return sysio.read_pidfile(self.paths.model_dir / "gunicorn.pid")

    def answers(self, server: LabHost) -> _Probe:
        return _Probe(server.address, self.bridge)


@dataclass(frozen=True)
class _Probe:
    address: str
    bridge: str

    def __call__(self) -> bool:
        return lab_network.http_ok(self.address, MODEL_SERVER_PORT, HEALTH_PATH,
                                   device=self.bridge)


def model_server_answers(server: LabHost, bridge: str) -> bool:
    """Whether the lab's model server answers ``GET /health`` (``lab status``)."""
    return _Probe(server.address, bridge)()

