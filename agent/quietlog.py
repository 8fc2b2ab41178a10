"""Warnings that other local users can trigger at will, logged at a bounded rate.

Refused and dropped connections are logged (an attack should show in the log), but at most
:data:`agent.protocol.REFUSAL_LOG_BURST` per :data:`agent.protocol.REFUSAL_LOG_WINDOW`
seconds and per kind; the rest are counted, and the count is logged with the next message let
through. The limits are read when the first message arrives, so tests may shrink them.
"""

from __future__ import annotations

import logging
import threading
import time

from agent import protocol
from agent.ratelimit import RateLimit


class QuietLog:
    """A logger's ``warning``, rate-limited; safe to call from any thread."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._lock = threading.Lock()
        self._limit: RateLimit | None = None

    def warning(self, message: str, *args: object) -> None:
        with self._lock:
            if self._limit is None:
                self._limit = RateLimit(protocol.REFUSAL_LOG_BURST, protocol.REFUSAL_LOG_WINDOW)
            verdict = self._limit.check(time.monotonic())
            window = self._limit.window
        if verdict.suppressed:
            self._logger.warning(
                "%d more like the next message in the last %g s were not logged",
                verdict.suppressed, window,
            )
        if verdict.log:
            self._logger.warning(message, *args)
