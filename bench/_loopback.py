"""A throw-away redis-server on loopback, for the benchmarks that measure a driver alone (no lab):
started on a free port with no persistence, stopped whatever happens, SIGTERM included (turned
into ``KeyboardInterrupt`` meanwhile: a benchmark killed by SIGTERM left its redis-server
running).

Not a test helper: nothing here asserts anything about speed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType


@contextlib.contextmanager
def redis_server(cpus: set[int] | None = None) -> Iterator[int]:
    """A redis-server on 127.0.0.1 for the ``with`` block, on ``cpus`` if given; its port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            if cpus is not None:
                os.sched_setaffinity(proc.pid, cpus)
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            proc.wait(10)
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


CLIENT_CPU = 0
"""The CPU a pinned client (a load process, redis-benchmark) runs on."""


def move_off_client_cpu() -> set[int]:
    """Move this process off :data:`CLIENT_CPU`; the CPUs left (for redis-server). Exits
    with one line on a host without another CPU."""
    mine = os.sched_getaffinity(0)
    others = mine - {CLIENT_CPU}
    if CLIENT_CPU not in mine or not others:
        raise SystemExit(f"--pin needs CPU {CLIENT_CPU} and another one")
    os.sched_setaffinity(0, others)
    return others


def idle_threads() -> int:
    """Every thread of this process but the main one at ``SCHED_IDLE``; how many.

    With ``--pin``, this script's threads share the server's CPU: the driver's supervisor,
    which reads and merges the load process's intervals, stands in for the agent. Traced with
    ``perf sched`` at 55,000 requests/s, it took that CPU for up to 2.8 ms at each interval
    boundary, and redis-server's replies waited. In a deployment the agent runs on the client's
    host, not the server's; at ``SCHED_IDLE`` it runs only when the server's CPU has nothing
    else to do, and still gets ``SCHED_IDLE``'s sliver of it when redis-server saturates it:
    the closed loop's capacity measured after the change, 112,800-141,200 requests/s, was not
    below the morning's 106,900-124,100/s. The main thread keeps its policy: the processes it
    spawns next inherit it, and an unprivileged thread cannot take ``SCHED_IDLE`` back."""
    main = threading.main_thread().native_id
    tasks = (int(task.name) for task in Path("/proc/self/task").iterdir())
    others = [tid for tid in tasks if tid != main]
    for tid in others:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    return len(others)


def server_version() -> str:
    """The installed redis-server's version, or ``?``."""
    text = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                          check=False).stdout  # fmt: skip
    for word in text.split():
        if word.startswith("v="):
            return word[2:]
    return "?"


def run_interruptible(main: Callable[[], int]) -> int:
    """``main``'s exit status; 130 with one line on Ctrl-C or SIGTERM (by then
    :func:`redis_server` has stopped its server), not a traceback."""
    try:
        return main()
    except KeyboardInterrupt:
        print("\ninterrupted: redis-server stopped", file=sys.stderr)
        return 130
