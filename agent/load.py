"""The agent's load controller: one driver at a time, and the order of calls on it.

The service (:mod:`agent.service`) turns RPyC calls into calls here; this module turns them into
driver calls, refusing those out of order with ``DriverError("state", ...)``::

    idle ──prepare──▶ prepared ──start──▶ running ──(planned end)──▶ finished
      ▲                  │                  │ stop                     │
      │                  └──stop──▶ stopped ◀┘                          │
      └──────────── prepare (replaces a finished, stopped or failed load) ◀┘

``preparing`` is shown while ``prepare`` runs; ``failed`` when a driver broke (a load process
died). Only one load can be prepared or running at a time; a new ``prepare`` closes the previous
driver once its load is over (collect its report first). Thread-safe: every method may be
called from any RPyC connection's thread; no lock is held while a driver works.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from agent.drivers import DRIVERS
from agent.drivers.base import (
    KIND_CONFIG,
    KIND_STATE,
    Driver,
    DriverError,
    LoadReport,
    LoadState,
    Prepared,
    Progress,
    no_keepalive,
)
from agent.drivers.spec import parse_spec
from agent.messages import LoadStarted, LoadStopped

log = logging.getLogger("agent.load")


class LoadController:
    def __init__(self, drivers: Mapping[str, Callable[[], Driver]] = DRIVERS) -> None:
        self._drivers = drivers
        self._lock = threading.Lock()
        self._driver: Driver | None = None
        self._preparing = False

    @property
    def state(self) -> LoadState:
        with self._lock:
            if self._preparing:
                return LoadState.PREPARING
            driver = self._driver
        return driver.state if driver is not None else LoadState.IDLE

    def prepare(self, spec_text: str, keepalive: Callable[[], None] = no_keepalive) -> Prepared:
        """Parse the spec, make its driver and prepare it: its processes and connections."""
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
        try:
            if previous is not None:
                previous.close()
            driver = factory()
            prepared = driver.prepare(spec, keepalive)
        except BaseException:
            with self._lock:
                self._preparing = False
            raise
        # One lock hold: between two, another prepare() would see neither flag nor driver,
        # start a second load, and orphan this one's processes.
        with self._lock:
            self._preparing = False
            self._driver = driver
        return prepared

    def start(self, t0_ns: int) -> LoadStarted:
        self._current("start").start_at(t0_ns)
        return LoadStarted(t0_ns=t0_ns)

    def progress(self) -> Progress:
        with self._lock:
            driver = self._driver
            preparing = self._preparing
        if driver is None:
            state = LoadState.PREPARING if preparing else LoadState.IDLE
            return Progress(state=state)
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
