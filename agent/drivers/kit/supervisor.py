"""Load processes, from the agent's side: started, read, ended.

One thread (:class:`Supervisor`) starts the processes, sends each its first message, then only
reads their channels (it sleeps in ``select`` between messages, so the agent's own CPU stays
near zero during a load) and hands every message to the driver. The thread lives as long as
the load: Linux delivers ``PR_SET_PDEATHSIG`` (asked for by :mod:`agent.drivers.kit.child`)
when the *thread* that forked a child ends, so processes started from an RPyC connection's
thread would die with that connection. A process that exits is left unreaped, so that its CPU
time can still be read (:func:`exit_status_unreaped`). :meth:`Supervisor.close` lets them exit
(their channel ends), makes sure they did, and reaps them. Each process gets a busy-poll
counter (:mod:`agent.drivers.kit.spin_counter`), known to the sampler by its pid until it is
reaped.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.drivers.channel import Channel, ChannelClosed
from agent.drivers.kit import spin_counter
from agent.drivers.kit.child import boot_argv

log = logging.getLogger("agent.drivers.kit.supervisor")

#: Time a load process has to exit after its channel closed, before SIGTERM, then SIGKILL.
EXIT_TIMEOUT = 2.0
_EXIT_POLL_S = 0.005


@dataclass
class Child:
    """One load process: its channel and, once started, its ``Popen``."""

    index: int
    channel: Channel
    child_end: socket.socket | None  # the process's end of the channel, until it is started
    greeting: dict[str, Any]  # its first message (``configure``)
    popen: subprocess.Popen[bytes] | None = None


class ChildEvents(Protocol):
    """What the supervisor tells its driver (from the supervisor's thread)."""

    def on_message(self, index: int, message: dict[str, Any]) -> None: ...

    def on_closed(self, index: int, status: int | None) -> None:
        """Child ``index``'s channel closed; its exit status (None: still running)."""

    def on_spawn_failure(self, indices: Sequence[int], problem: str) -> None:
        """The children ``indices`` could not be started."""

    def on_reader_failure(self) -> None:
        """The supervisor's reader broke (a bug): nothing more will be heard."""


class Supervisor(threading.Thread):
    """Starts ``python -m``-like load processes running ``module`` and reads them."""

    def __init__(self, module: str, greetings: Sequence[dict[str, Any]],
                 events: ChildEvents) -> None:
        super().__init__(name=f"load-processes-{module}", daemon=True)
        self.module = module
        self.children: list[Child] = []
        for index, greeting in enumerate(greetings):
            parent_end, child_end = socket.socketpair()
            self.children.append(Child(index, Channel(parent_end), child_end, greeting))
        self._events = events
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._shutting = False

    def send_all(self, message: dict[str, Any]) -> None:
        """Send ``message`` to every child (a dead one is noticed by the reader)."""
        for child in self.children:
            with contextlib.suppress(ChannelClosed):
                child.channel.send(message)

    def pids(self) -> list[int]:
        return [child.popen.pid for child in self.children if child.popen is not None]

    def close(self) -> None:
        """End every channel, let the processes exit, make sure they did. Idempotent."""
        for child in self.children:
            child.channel.shutdown_write()  # the process reads the end, and exits
            if child.child_end is not None:
                child.child_end.close()
                child.child_end = None
        if self.is_alive() or not self._shutting:
            self._finish(EXIT_TIMEOUT)
        for child in self.children:
            child.channel.close()
            end_process(child.popen)
            if child.popen is not None:
                spin_counter.COUNTERS.remove(child.popen.pid)

    def _finish(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every channel to close, then stop reading.

        The load processes die with this thread (``PR_SET_PDEATHSIG``), hence the wait."""
        started = self.ident is not None
        if started and self is not threading.current_thread():
            self.join(timeout)
        self._shutting = True
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")
        if started and self is not threading.current_thread():
            self.join(timeout)
        self._wake_writer.close()
        self._wake_reader.close()

    def run(self) -> None:
        self._spawn()
        try:
            self._read()
        except Exception:  # a bug: the driver must hear of it rather than wait forever
            log.exception("the reader of load processes failed")
            self._events.on_reader_failure()

    def _spawn(self) -> None:
        try:
            for child in self.children:
                if child.child_end is None:  # closed already: the driver is closing
                    break
                fd = child.child_end.fileno()
                counter_fd, counter = new_counter()
                try:
                    child.popen = subprocess.Popen(
                        boot_argv(self.module, fd, counter_fd),
                        pass_fds=(fd,) if counter_fd is None else (fd, counter_fd),
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        close_fds=True,
                    )
                except OSError:
                    if counter is not None:
                        counter.close()
                    raise
                finally:
                    if counter_fd is not None:
                        os.close(counter_fd)
                if counter is not None:
                    spin_counter.COUNTERS.add(child.popen.pid, counter)
                child.child_end.close()
                child.child_end = None
                child.channel.send(child.greeting)
        except (OSError, ChannelClosed) as exc:
            log.error("cannot start load processes: %s", exc)
            unspawned = [child.index for child in self.children if child.popen is None]
            self._events.on_spawn_failure(unspawned, f"could not start: {exc}")

    def _read(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_reader, selectors.EVENT_READ, None)
            for child in self.children:
                if child.popen is not None:
                    selector.register(child.channel.sock, selectors.EVENT_READ, child)
            open_channels = sum(1 for child in self.children if child.popen is not None)
            while open_channels and not self._shutting:
                for key, _events in selector.select():
                    child = key.data
                    if child is None or self._shutting:
                        continue
                    if not self._deliver(child):
                        selector.unregister(child.channel.sock)
                        open_channels -= 1
                        self._events.on_closed(child.index, self._exit_status(child))

    def _deliver(self, child: Child) -> bool:
        """Hand the child's messages to the driver; False once its channel closed."""
        try:
            child.channel.read_available()
            messages = child.channel.take()
        except ChannelClosed:
            return False
        for message in messages:
            self._events.on_message(child.index, message)
        return True

    @staticmethod
    def _exit_status(child: Child) -> int | None:
        if child.popen is None:
            return None
        return exit_status_unreaped(child.popen.pid, EXIT_TIMEOUT)


def exit_status_unreaped(pid: int, timeout: float) -> int | None:
    """The exit status of child ``pid`` once it exits (None: still running after ``timeout``
    seconds), as ``Popen.returncode`` gives it, leaving the child unreaped.

    A process that exited but is not reaped keeps its CPU time readable (its CPU-time clock,
    :mod:`agent.metrics.procfs`). The sampler's snapshot of the load's planned end, taken a
    little late on a busy host, then still counts a load process that exited just before it;
    reaped at once, its last interval's CPU was lost. :meth:`Supervisor.close` reaps it, when
    the next load is prepared or the agent stops."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except ChildProcessError:  # reaped already
            return None
        if exited is not None and exited.si_pid == pid:
            return exited.si_status if exited.si_code == os.CLD_EXITED else -exited.si_status
        if time.monotonic() >= deadline:
            return None
        time.sleep(_EXIT_POLL_S)


def new_counter() -> tuple[int | None, mmap.mmap | None]:
    """A busy-poll counter for a load process; none where the host cannot make one (its
    polling, if any, is then not deducted: the verdicts read its CPU as measured)."""
    try:
        return spin_counter.new_counter_file()
    except OSError as exc:
        log.warning("no busy-poll counter for a load process: %s", exc)
        return None, None


def end_process(popen: subprocess.Popen[bytes] | None) -> None:
    """Let a load process exit (its channel is closed), then make sure it did."""
    if popen is None:
        return
    try:
        popen.wait(EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        popen.terminate()
        try:
            popen.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
