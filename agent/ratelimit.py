"""How often a repeated message may be logged: pure logic, no I/O, no clock of its own.

Any local user can make the agent refuse connections, or drop them, as fast as they can open
them. Logging each one would let them grow the agent's log at their pace; logging none would
hide the attack. So :class:`RateLimit` lets a burst through per window, counts the rest, and
hands that count to the first message of the next window, which reports it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """What to do with one message."""

    log: bool
    """Log this message."""
    suppressed: int
    """Messages not logged in the window that just ended (report them now); 0 otherwise."""


class RateLimit:
    """At most ``burst`` messages per ``window`` seconds. Not thread-safe: callers lock."""

    def __init__(self, burst: int, window: float) -> None:
        if burst < 0 or window <= 0:
            raise ValueError("burst must be >= 0 and window > 0")
        self.burst = burst
        self.window = window
        self._window_start: float | None = None
        self._logged = 0
        self._suppressed = 0

    def check(self, now: float) -> Verdict:
        """The verdict for a message arriving at ``now`` (a monotonic clock, in seconds)."""
        reported = 0
        if self._window_start is None or now - self._window_start >= self.window:
            reported, self._suppressed = self._suppressed, 0
            self._window_start, self._logged = now, 0
        if self._logged < self.burst:
            self._logged += 1
            return Verdict(log=True, suppressed=reported)
        self._suppressed += 1
        return Verdict(log=False, suppressed=reported)
