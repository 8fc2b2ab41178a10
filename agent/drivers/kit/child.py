"""The entry of a load process and its conversation with the agent.

The agent starts it as ``python -I -c BOOT PATHS MODULE FD PARENT_PID [COUNTER_FD]``
(:func:`boot_argv`): a fresh interpreter (not a fork of the multithreaded agent) with the
agent's ``sys.path``, which runs ``MODULE.main`` over the Unix socket ``FD``
(:mod:`agent.drivers.channel`), with its busy-poll counter ``COUNTER_FD``
(:mod:`agent.drivers.kit.spin_counter`). It asks the
kernel to kill it if the agent thread that started it dies (``PR_SET_PDEATHSIG``), and stays in
the agent's process group, so nothing outlives the agent. The conversation (:func:`serve`)::

    configure {config}  ->  ready {connections} | error {kind, message}
    start {t0_ns}       ->  what the load sends (agent.drivers.kit.timed: started,
                            interval per interval, finished)
    stop                ->  finished (before start), or the load cuts itself short
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn, Protocol

from agent.drivers.channel import Channel, ChannelClosed
from agent.drivers.errors import KIND_INTERNAL, DriverError
from agent.drivers.kit import spin_counter

_PR_SET_PDEATHSIG: Final = 1

BOOT: Final = (
    "import importlib, json, sys; "
    "sys.path[:0] = [p for p in json.loads(sys.argv[1]) if p not in sys.path]; "
    "importlib.import_module(sys.argv[2]).main(sys.argv[3:])"
)


def boot_argv(module: str, fd: int, counter_fd: int | None = None) -> list[str]:
    """The command that starts a load process running ``module.main`` on channel ``fd``."""
    paths = [path for path in sys.path if path]
    counter = [] if counter_fd is None else [str(counter_fd)]
    return [sys.executable, "-I", "-c", BOOT, json.dumps(paths), module, str(fd),
            str(os.getpid()), *counter]


class Load(Protocol):
    """What one load process runs, built from its ``configure`` message."""

    def prepare(self) -> int:
        """Connect (and preload...); the connections opened. DriverError if it cannot."""

    def run_at(self, t0_ns: int) -> None:
        """Run the load from ``t0_ns`` (agent clock) to its end or a stop, reporting it."""

    def close(self) -> None:
        """Release sockets and the like."""


def child_main(argv: Sequence[str], make_load: Callable[[dict[str, Any], Channel], Load]
               ) -> NoReturn:
    """A load process's ``main``: argv is ``FD PARENT_PID [COUNTER_FD]``; never returns."""
    fd, parent = int(argv[0]), int(argv[1])
    die_with_parent(parent)
    if len(argv) > 2:
        spin_counter.attach(int(argv[2]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the agent's to handle
    channel = Channel(socket.socket(fileno=fd))
    status = 1
    try:
        status = serve(channel, make_load)
    except ChannelClosed:
        status = 0  # the agent went away or closed us: nothing left to tell anyone
    except Exception as exc:  # noqa: BLE001 (a bug: say it, then leave)
        traceback.print_exc()
        with contextlib.suppress(ChannelClosed):
            channel.send({"type": "error", "kind": KIND_INTERNAL,
                          "message": f"{type(exc).__name__}: {exc}"})
    finally:
        sys.stderr.flush()
    os._exit(status)


def die_with_parent(parent: int) -> None:
    """Ask Linux for SIGKILL when the agent thread that started us ends; leave at once if the
    agent is already gone (it may have died before the request took effect)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def serve(channel: Channel, make_load: Callable[[dict[str, Any], Channel], Load]) -> int:
    """Configure, prepare, wait for start (or stop), run; the process exit status."""
    message = channel.receive()
    if message["type"] != "configure":
        raise RuntimeError(f"expected configure, got {message['type']}")
    try:
        load = make_load(message["config"], channel)  # a config it cannot use: DriverError
    except DriverError as exc:
        channel.send({"type": "error", "kind": exc.kind, "message": exc.message})
        return 0
    try:
        connections = load.prepare()
    except DriverError as exc:
        load.close()
        channel.send({"type": "error", "kind": exc.kind, "message": exc.message})
        return 0
    channel.send({"type": "ready", "connections": connections})
    gc.collect()
    gc.freeze()  # what the set-up made stays out of collections
    while True:
        message = channel.receive()
        if message["type"] == "start":
            gc.disable()  # a load loop makes no reference cycles; a collection is a pause
            load.run_at(int(message["t0_ns"]))
            load.close()
            return 0
        if message["type"] == "stop":
            load.close()
            channel.send({"type": "finished", "stopped_ns": time.time_ns(), "reason": "stopped"})
            return 0
