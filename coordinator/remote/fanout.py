"""Run one piece of work on every host in parallel and keep every host's outcome.

Like fabric's ``GroupResult``: one dead host never throws away the others' results. Work
reports its progress through a :class:`StageReporter` (connecting, uploading, ...), which feeds
whatever view the caller passed in (a live rich table, or nothing).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from coordinator.core.errors import CoordError, FleetError, HostError

T = TypeVar("T")

MAX_PARALLEL_HOSTS = 64


class ProgressView(Protocol):
    """Receives stage changes from every host's worker thread."""

    def stage(self, host: str, stage: str, detail: str = "") -> None: ...

    def failed(self, host: str, stage: str, error: HostError) -> None: ...

    def done(self, host: str, detail: str = "") -> None: ...


class NoProgress:
    """A view that shows nothing (tests, scripts)."""

    def stage(self, host: str, stage: str, detail: str = "") -> None:
        """Ignore a stage change."""

    def failed(self, host: str, stage: str, error: HostError) -> None:
        """Ignore a failure (it is in the result anyway)."""

    def done(self, host: str, detail: str = "") -> None:
        """Ignore completion."""


@dataclass
class StageReporter:
    """Handed to the work for one host: records which stage it is in and how long each took."""

    host: str
    view: ProgressView
    current: str = "starting"
    timings: dict[str, float] = field(default_factory=dict)
    _since: float = field(default_factory=time.monotonic)

    def __call__(self, stage: str, detail: str = "") -> None:
        """Enter ``stage`` (closing the timing of the previous one)."""
        now = time.monotonic()
        self.timings[self.current] = self.timings.get(self.current, 0.0) + now - self._since
        self.current, self._since = stage, now
        self.view.stage(self.host, stage, detail)


@dataclass(frozen=True)
class HostFailure:
    """Where and why one host failed."""

    stage: str
    error: HostError


@dataclass
class FleetResult(Generic[T]):
    """Per-host outcomes: ``succeeded`` values and ``failed`` errors, both keyed by host."""

    succeeded: dict[str, T] = field(default_factory=dict)
    failed: dict[str, HostFailure] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no host failed."""
        return not self.failed

    def raise_for_failures(self) -> None:
        """Raise a ``FleetError`` carrying every host's error if any host failed."""
        if self.failed:
            raise FleetError({host: failure.error for host, failure in self.failed.items()})


def fan_out(
    hosts: Sequence[str],
    work: Callable[[str, StageReporter], T],
    view: ProgressView | None = None,
    max_parallel: int = MAX_PARALLEL_HOSTS,
) -> FleetResult[T]:
    """Run ``work(host, report)`` for every host in parallel threads.

    A ``HostError`` fails that host only; any other ``CoordError`` is attributed to the host as
    well. Exceptions that are not ``CoordError`` are bugs: they are re-raised once every other
    host has finished, so no worker is left running behind the traceback.
    """
    view = view or NoProgress()
    result: FleetResult[T] = FleetResult()
    lock = threading.Lock()
    bugs: list[BaseException] = []

    def one(host: str) -> None:
        reporter = StageReporter(host, view)
        try:
            value = work(host, reporter)
        except HostError as exc:
            failure = HostFailure(reporter.current, exc)
        except CoordError as exc:
            failure = HostFailure(reporter.current, HostError(host, str(exc)))
        except BaseException as exc:  # noqa: BLE001 - a bug: re-raised once all hosts finish
            with lock:
                bugs.append(exc)
            return
        else:
            reporter("done")
            with lock:
                result.succeeded[host] = value
                result.timings[host] = reporter.timings
            view.done(host)
            return
        with lock:
            result.failed[host] = failure
            result.timings[host] = reporter.timings
        view.failed(host, failure.stage, failure.error)

    if hosts:
        pool = ThreadPoolExecutor(max_workers=min(max_parallel, len(hosts)))
        try:
            list(pool.map(one, hosts))
        except BaseException:
            # Ctrl-C or SIGTERM in the waiting thread: leave at once. A worker still blocked
            # (a long preload) ends when its link closes, which the caller's clean-up does.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    if bugs:
        raise bugs[0]
    return result

