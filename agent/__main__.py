"""The agent's command line: ``python -m agent serve --watchdog SECONDS --state-dir DIR``.

The coordinator starts it over SSH, from the unpacked bundle::

    cd BUNDLE_DIR && PYTHONPATH=BUNDLE_DIR/site:BUNDLE_DIR exec /usr/bin/python3 \\
        -m agent serve --watchdog 15 --state-dir ~/.cache/coord [--bundle-hash HASH]

and talks to it as :mod:`agent.protocol` describes: one startup line on stdin (token and
versions, never in argv), one ready line on stdout (port and pid), then RPyC through an SSH
port forward to 127.0.0.1:PORT. The agent logs to ``DIR/agent.log`` and keeps ``DIR/agent.pid``
(JSON: pid and port) while it runs.

Exit status: 0 after a clean shutdown (whatever its reason, which is logged), 2 when it refuses
to start (bad startup line, other versions), 1 when it cannot start (state dir, bind...); in
the last two cases stdout carries one JSON error line instead of the ready line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import stat
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import rpyc

import agent
from agent import protocol
from agent.auth import TokenAuthenticator
from agent.listener import AgentServer, raise_file_limit
from agent.logfile import AgentLogHandler, open_log
from agent.processes import lead_own_group, stop_group
from agent.service import SERVER_CONFIG, AgentService
from agent.watchdog import (
    Liveness,
    install_signal_handlers,
    read_startup_line,
    start_stdin_watcher,
    supervise,
)

log = logging.getLogger("agent")

LISTEN_HOST = "127.0.0.1"
STDIN_FD = 0
STDOUT_FD = 1


class StartupRefused(Exception):
    """The agent will not start; carries the JSON error line's fields and the exit status."""

    def __init__(self, error: str, message: str, status: int = 2, **details: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.status = status
        self.details = details


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent", description="The coord agent.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="read the startup line on stdin, listen on 127.0.0.1, serve the coordinator",
    )
    serve.add_argument(
        "--watchdog",
        type=_positive_seconds,
        default=protocol.DEFAULT_WATCHDOG,
        metavar="SECONDS",
        help="exit when no request arrives for this long (default %(default)s)",
    )
    serve.add_argument(
        "--state-dir",
        type=Path,
        default=Path("~/.cache/coord"),
        metavar="DIR",
        help="where agent.log and agent.pid live (default %(default)s)",
    )
    serve.add_argument(
        "--bundle-hash",
        default=os.environ.get(protocol.BUNDLE_HASH_ENV),
        metavar="HASH",
        help=f"bundle content hash, reported by hello() (default ${protocol.BUNDLE_HASH_ENV})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    session = lead_own_group()  # first: load processes started later must share our group
    files_before, files_now = raise_file_limit()
    args = build_parser().parse_args(argv)
    try:
        state_dir = _prepare_state_dir(args.state_dir)
        handler = _configure_logging(state_dir / protocol.LOG_FILE)
    except OSError as exc:
        _emit(protocol.encode_startup_error(protocol.ERROR_STARTUP_FAILED, str(exc)))
        return 1
    log.info(
        "agent %s (rpyc %s, python %s) pid %d starting; %s; open files limit %d (was %d)",
        agent.__version__,
        rpyc.__version__,
        platform.python_version(),
        os.getpid(),
        session,
        files_now,
        files_before,
    )
    try:
        return serve(args.watchdog, state_dir, args.bundle_hash, handler)
    except StartupRefused as refusal:
        log.error("refusing to start: %s", refusal.message)
        _emit(protocol.encode_startup_error(refusal.error, refusal.message, **refusal.details))
        return refusal.status


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """``main``, then leave at once: daemon threads blocked in reads must not delay the exit."""
    status = main(argv)
    logging.shutdown()
    os._exit(status)


def serve(
    watchdog: float, state_dir: Path, bundle_hash: str | None, log_handler: AgentLogHandler
) -> int:
    mine = protocol.Versions(coord=agent.__version__, rpyc=rpyc.__version__)
    token = _read_startup(mine)

    liveness = Liveness()
    install_signal_handlers(liveness)
    service = AgentService(liveness, watchdog=watchdog, bundle_hash=bundle_hash)
    try:
        server = AgentServer(
            service,
            hostname=LISTEN_HOST,
            port=0,
            authenticator=TokenAuthenticator(token, mine),
            protocol_config=dict(SERVER_CONFIG),
            logger=logging.getLogger("agent.rpyc"),
            listener_timeout=None,  # close() wakes accept(); no idle polling
        )
        # Listen before announcing the port, so the coordinator can connect at once.
        # (_listen is rpyc's own first step of start(); start() skips it once active.)
        server._listen()
    except OSError as exc:
        raise StartupRefused(
            protocol.ERROR_STARTUP_FAILED, f"cannot listen on {LISTEN_HOST}: {exc}", status=1
        ) from None
    port: int = server.port
    pid_file = state_dir / protocol.PID_FILE
    _write_pid_file(pid_file, port)

    _emit(
        protocol.encode_ready(
            port=port,
            pid=os.getpid(),
            agent_version=mine.coord,
            python=platform.python_version(),
            rpyc_version=mine.rpyc,
        )
    )
    _detach_stdio(log_handler)
    log.info("listening on %s:%d; watchdog %g s", LISTEN_HOST, port, watchdog)

    threading.Thread(target=server.start, name="rpyc-server", daemon=True).start()
    start_stdin_watcher(liveness, STDIN_FD)
    reason = supervise(liveness, watchdog)

    log.info("shutting down: %s", reason)
    service.close_connections(protocol.CLOSE_REPLY_TIMEOUT)
    server.close()
    report = stop_group(protocol.CHILD_TERM_GRACE)
    if report.terminated:
        log.info(
            "stopped %d process(es) of the group, %d with SIGKILL",
            report.terminated,
            report.killed,
        )
    _remove_pid_file(pid_file)
    log.info("agent exits")
    return 0


def _read_startup(mine: protocol.Versions) -> str:
    try:
        raw = read_startup_line(STDIN_FD, protocol.STARTUP_TIMEOUT, protocol.MAX_LINE_BYTES)
        request = protocol.decode_startup(raw)
    except (OSError, EOFError, ValueError) as exc:  # ProtocolError is a ValueError
        raise StartupRefused(protocol.ERROR_BAD_STARTUP, f"bad startup line: {exc}") from None
    if request.versions != mine:
        raise StartupRefused(
            protocol.ERROR_VERSION_MISMATCH,
            protocol.version_mismatch("agent", mine, "coordinator", request.versions),
            agent_version=mine.coord,
            rpyc_version=mine.rpyc,
        )
    if not protocol.valid_token(request.token):
        raise StartupRefused(
            protocol.ERROR_BAD_STARTUP,
            f"the token must be at least {protocol.MIN_TOKEN_HEX} hexadecimal characters",
        )
    return request.token


def _emit(line: bytes) -> None:
    """One line on stdout, unbuffered: the coordinator reads it through SSH."""
    with contextlib.suppress(OSError):  # nobody left to read it
        os.write(STDOUT_FD, line)


def _detach_stdio(log_handler: AgentLogHandler) -> None:
    """After the ready line, stdout says nothing more and stderr goes to the log."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, STDOUT_FD)
    os.close(devnull)
    log_handler.capture_stderr()


def _prepare_state_dir(path: Path) -> Path:
    """The state directory, created owner-only; refused if another user owns it or may write
    to it (they could plant a link where the agent writes its log or pid file)."""
    state_dir = path.expanduser()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = state_dir.lstat()
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise PermissionError(
            f"state directory {state_dir} must be a directory of uid {os.getuid()} that nobody "
            f"else can write (it is uid {info.st_uid}, mode {stat.filemode(info.st_mode)})"
        )
    return state_dir


def _configure_logging(log_path: Path) -> AgentLogHandler:
    os.close(open_log(log_path))  # fail here, before any handler, if it cannot be written
    handler = AgentLogHandler(log_path)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # rpyc logs every accepted, refused and closed connection at INFO: anyone on the host could
    # fill the log with them. The agent logs what matters itself (rate-limited when a stranger
    # can trigger it).
    logging.getLogger("agent.rpyc").setLevel(logging.WARNING)
    return handler


def _write_pid_file(path: Path, port: int) -> None:
    previous = _read_pid_file(path)
    if previous is not None and previous != os.getpid() and _pid_alive(previous):
        log.warning("pid file %s names a live agent (pid %d); replacing it", path, previous)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"pid": os.getpid(), "port": port}, out)
        out.write("\n")
    tmp.replace(path)


def _remove_pid_file(path: Path) -> None:
    """Remove the pid file if it is still ours (a newer agent may have taken the directory)."""
    if _read_pid_file(path) == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _read_pid_file(path: Path) -> int | None:
    try:
        pid = json.loads(path.read_text(encoding="utf-8")).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    return pid if type(pid) is int else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


if __name__ == "__main__":
    run(sys.argv[1:])
