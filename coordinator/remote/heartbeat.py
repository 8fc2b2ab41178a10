"""Liveness and clocks of one agent: :class:`Heartbeater` keeps its watchdog quiet and notices
its loss, :func:`measure_offset` samples its clock (the I/O half of
:mod:`coordinator.core.clock`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

from agent import protocol
from coordinator.core.clock import ClockEstimate, ClockSample, estimate_offset
from coordinator.core.errors import AgentError
from coordinator.remote.agent_calls import AgentCalls


class Heartbeater:
    """Calls ``link.heartbeat()`` every ``interval`` seconds in a thread until stopped or the
    agent is lost; the loss is kept in :attr:`error` and passed to ``on_lost``."""

    def __init__(
        self,
        link: AgentCalls,
        interval: float | None = None,
        on_lost: Callable[[AgentError], None] | None = None,
    ) -> None:
        self.link = link
        self.interval = protocol.HEARTBEAT_INTERVAL if interval is None else interval
        self.error: AgentError | None = None
        self._on_lost = on_lost
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{link.host}", daemon=True
        )

    def start(self) -> Heartbeater:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> Heartbeater:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.link.heartbeat()
            except AgentError as exc:
                if self._stopped.is_set():
                    return  # the link was closed on purpose
                self.error = exc
                if self._on_lost is not None:
                    self._on_lost(exc)
                return


def measure_offset(link: AgentCalls, rounds: int = 8) -> ClockEstimate:
    """Estimate the agent's clock offset from ``rounds`` round trips of ``clock()``.

    Wall-clock timestamps are derived from one monotonic clock, so a step of the coordinator's
    wall clock during the measurement cannot produce a negative round trip.
    """
    if rounds < 1:
        raise ValueError("measure_offset needs at least one round")
    samples = []
    for _ in range(rounds):
        sent_mono = time.monotonic_ns()
        sent_ns = time.time_ns()
        agent_ns = link.clock()
        received_mono = time.monotonic_ns()
        # received >= the true wall time of the answer (sent_mono was read first): the
        # interval [sent_ns, received_ns] still contains the agent's reading.
        samples.append(ClockSample(sent_ns, agent_ns, sent_ns + (received_mono - sent_mono)))
    return estimate_offset(samples)


