"""The agent's load controller: one driver at a time, and the order of calls on it.

The service (:mod:`agent.service`) turns RPyC calls into calls here; this module turns them into
driver calls, refusing those out of order with ``DriverError("state", ...)``::

    idle ──prepare──▶ prepared ──start──▶ running ──(planned end)──▶ finished
      ▲                  │                  │ stop                     │
      │                  └──stop──▶ stopped ◀┘                          │
      └──────────── prepare (replaces a finished, stopped or failed load) ◀┘

``preparing`` is shown while ``prepare`` runs (in a thread of its own with
:meth:`LoadController.begin_prepare`; a failed one leaves ``idle``); ``failed`` when a driver
broke (a load process died). Only one load can be prepared or running at a time; a new
``prepare`` closes the previous driver once its load is over (collect its report first).
Thread-safe: every method may be called from any RPyC connection's thread; no lock is held
while a driver works.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace

from agent.drivers import DRIVERS
from agent.drivers.base import (
    KIND_CONFIG,
    KIND_INTERNAL,
    KIND_STATE,
    Driver,
    DriverError,
    LoadReport,
    LoadState,
    Prepared,
    Progress,
    no_keepalive,
)
from agent.drivers.spec import LoadSpec, parse_spec
from agent.messages import LoadStarted, LoadStopped

log = logging.getLogger("agent.load")


class LoadController:
    def __init__(self, drivers: Mapping[str, Callable[[], Driver]] = DRIVERS) -> None:
        self._drivers = drivers
        self._lock = threading.Lock()
        self._driver: Driver | None = None
        self._preparing = False
        self._pending: Driver | None = None  # the driver being prepared (its preload progress)
        self._outcome: Prepared | DriverError | None = None

    @property
    def state(self) -> LoadState:
        with self._lock:
            if self._preparing:
                return LoadState.PREPARING
            driver = self._driver
        return driver.state if driver is not None else LoadState.IDLE

    def prepare(self, spec_text: str, keepalive: Callable[[], None] = no_keepalive) -> Prepared:
        """Parse the spec, make its driver and prepare it: its processes and connections."""
        work = self._claim(spec_text)
        self._run_preparation(*work, keepalive)
        return self.prepared()

    def begin_prepare(self, spec_text: str) -> Progress:
        """:meth:`prepare` in a thread of its own, answering at once (``preparing``).

        A preload can take minutes, and the agent answers one connection's calls in order: a
        blocking ``prepare`` would hold back the coordinator's heartbeats. The spec and the
        order of calls are checked here (``DriverError`` at once); the driver's own failure
        waits for :meth:`prepared` (:meth:`progress` then says ``idle``, with the problem).
        """
        work = self._claim(spec_text)
        threading.Thread(target=self._run_preparation, args=work, name="prepare-load",
                         daemon=True).start()
        return Progress(state=LoadState.PREPARING)

    def prepared(self) -> Prepared:
        """What the last preparation made, or the ``DriverError`` it failed with."""
        with self._lock:
            if self._preparing:
                raise DriverError(KIND_STATE, "the load is still being prepared")
            outcome = self._outcome
        if outcome is None:
            raise DriverError(KIND_STATE, "no load was prepared")
        if isinstance(outcome, DriverError):
            raise outcome
        return outcome

    def _claim(self, spec_text: str) -> tuple[LoadSpec, Callable[[], Driver], Driver | None]:
        """Check the spec and the order of calls; mark the load as being prepared."""
        spec = parse_spec(spec_text)
        factory = self._drivers.get(spec.driver)
        if factory is None:
            known = ", ".join(sorted(self._drivers))
            raise DriverError(KIND_CONFIG, f"unknown driver {spec.driver!r} (known: {known})")
        with self._lock:
            if self._preparing:
                raise DriverError(KIND_STATE, "a load is being prepared already")
            previous = self._driver
            if previous is not None and not previous.state.done:
                raise DriverError(
                    KIND_STATE,
                    f"a load is {previous.state.value} already; stop it before preparing another",
                )
            self._preparing = True
            self._driver = None
            self._outcome = None
        return spec, factory, previous

    def _run_preparation(
        self,
        spec: LoadSpec,
        factory: Callable[[], Driver],
        previous: Driver | None,
        keepalive: Callable[[], None] = no_keepalive,
    ) -> None:
        """Prepare the claimed load; its outcome (answer or DriverError) is kept for
        :meth:`prepared`. Anything else is a bug: logged, and kept as an ``internal`` failure."""
        driver: Driver | None = None
        outcome: Prepared | DriverError
        try:
            if previous is not None:
                previous.close()
            driver = factory()
            with self._lock:
                self._pending = driver
            outcome = driver.prepare(spec, keepalive)
        except DriverError as exc:
            outcome = exc
        except Exception as exc:
            log.exception("preparing the load failed")
            outcome = DriverError(KIND_INTERNAL, f"preparing the load failed: {exc!r} (a bug)")
        # One lock hold: between two, another prepare() would see neither flag nor driver,
        # start a second load, and orphan this one's processes.
        with self._lock:
            self._preparing = False
            self._pending = None
            self._outcome = outcome
            if not isinstance(outcome, DriverError):
                self._driver = driver

    def start(self, t0_ns: int) -> LoadStarted:
        self._current("start").start_at(t0_ns)
        return LoadStarted(t0_ns=t0_ns)

    def progress(self) -> Progress:
        with self._lock:
            driver = self._driver
            preparing = self._preparing
            pending = self._pending
            outcome = self._outcome
        if driver is None:
            if preparing:
                if pending is not None:  # its preload's progress, if it preloads
                    return replace(pending.progress(), state=LoadState.PREPARING)
                return Progress(state=LoadState.PREPARING)
            # A failed preparation leaves no load: idle, saying why (prepared() has its kind).
            problem = outcome.message if isinstance(outcome, DriverError) else None
            return Progress(state=LoadState.IDLE, problem=problem)
        return driver.progress()

    def stop(self) -> LoadStopped:
        """Stop the load if one is prepared or running; the state it ends in."""
        with self._lock:
            driver = self._driver
        if driver is None:
            return LoadStopped(self.state)
        driver.stop()
        return LoadStopped(driver.state)

    def report(self) -> LoadReport:
        """The load report (the driver must be over)."""
        return self._current("report").report()

    def close(self) -> None:
        """Stop and release the driver, if any."""
        with self._lock:
            driver, self._driver = self._driver, None
        if driver is not None:
            driver.close()

    def _current(self, what: str) -> Driver:
        with self._lock:
            driver = self._driver
        if driver is None:
            raise DriverError(KIND_STATE, f"cannot {what}: no load is prepared")
        return driver
