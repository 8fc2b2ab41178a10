"""The interface every load driver implements, and the error it speaks.

A driver generates load against one target and reports it per interval. Its life, driven by
:class:`agent.load.LoadController` (one driver at a time)::

    prepare(spec)        connections opened, authenticated, keyspace preloaded: ready to go;
                         raises DriverError before any load if the target cannot be used
    start_at(t0_ns)      returns at once; the load starts at the agent-clock instant t0_ns
    progress()           cheap snapshot for a live view (any time)
    stop()               cut the load short (it also ends by itself after the measure phase)
    report()             the full result, once finished or stopped (agent.drivers.intervals)
    close()              release everything: processes, sockets, threads (idempotent)

States (:class:`agent.messages.LoadState`, with ``Prepared`` and ``Progress`` the messages
``prepare`` and ``progress`` answer): ``prepared`` → ``running`` → ``finished`` (the planned end) or
``stopped`` (``stop()``) or ``failed`` (the driver broke: a worker died...).

Errors a user can fix leave as :class:`DriverError` with a ``kind`` and a one-line message,
e.g. ``DriverError("auth", "cannot authenticate to 198.18.0.10:6379: WRONGPASS ...")``.
"""

from __future__ import annotations

import abc
import platform
import sys
from collections.abc import Callable
from typing import ClassVar

from agent.drivers.errors import (
    KIND_AUTH,
    KIND_CONFIG,
    KIND_INTERNAL,
    KIND_SERVER,
    KIND_STATE,
    KIND_UNREACHABLE,
    KIND_WORKER,
    DriverError,
)
from agent.drivers.intervals import LoadReport
from agent.drivers.spec import LoadSpec
from agent.messages import LoadProgress as Progress
from agent.messages import LoadState, Prepared

__all__ = [
    "KIND_AUTH",
    "KIND_CONFIG",
    "KIND_INTERNAL",
    "KIND_SERVER",
    "KIND_STATE",
    "KIND_UNREACHABLE",
    "KIND_WORKER",
    "Driver",
    "DriverError",
    "LoadReport",
    "LoadSpec",
    "LoadState",
    "Prepared",
    "Progress",
    "no_keepalive",
    "this_interpreter",
]


def this_interpreter() -> str:
    """The interpreter load processes started with ``sys.executable`` run, for :class:`Prepared`."""
    return f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"


def no_keepalive() -> None:
    """The default ``keepalive`` of :meth:`Driver.prepare`: nothing to tell."""


class Driver(abc.ABC):
    """One load generator. Methods may be called from several threads; implementations lock."""

    #: The ``driver`` value of a spec that selects this driver.
    name: ClassVar[str]
    #: What ``Prepared.driver_version`` says (an external tool's driver: the tool's version).
    version: ClassVar[str]

    @abc.abstractmethod
    def prepare(self, spec: LoadSpec, keepalive: Callable[[], None] = no_keepalive) -> Prepared:
        """Get ready to load ``spec.target``; DriverError if it cannot. Blocks until ready,
        calling ``keepalive`` about every second meanwhile (preloading can take a while)."""

    @abc.abstractmethod
    def start_at(self, t0_ns: int) -> None:
        """Start the load at ``t0_ns`` (``time.time_ns()`` of this host); returns at once."""

    @property
    @abc.abstractmethod
    def state(self) -> LoadState:
        """Where the driver is in its life."""

    @abc.abstractmethod
    def progress(self) -> Progress:
        """A cheap snapshot for a live view."""

    @abc.abstractmethod
    def stop(self) -> None:
        """End the load now (the interval in progress is reported incomplete); waits briefly
        for the last data. Harmless when already over."""

    @abc.abstractmethod
    def report(self) -> LoadReport:
        """The result; DriverError("state", ...) unless the load is over."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop and release everything (processes, sockets, threads). Idempotent."""
