"""Clock offset between the coordinator and an agent, estimated NTP-style. Pure: no I/O.

One sample is one round trip: the coordinator reads its clock (``sent_ns``), asks the agent for
its clock (``agent_ns``), reads its clock again (``received_ns``). Whatever the delays on the
way out and back, the agent read its clock somewhere inside the round trip, so with the true
offset ``θ`` (agent clock minus coordinator clock)::

    sent_ns + θ <= agent_ns <= received_ns + θ
    agent_ns - received_ns <= θ <= agent_ns - sent_ns

The midpoint estimate ``agent_ns - (sent_ns + received_ns) / 2`` is therefore within half the
round trip of the truth, for any asymmetry. The sample with the smallest round trip gives the
tightest bound, so it is the one kept (ties broken by the sample's values, so the choice does
not depend on the order of the samples).

All values are integer nanoseconds. The midpoint is rounded down, so the uncertainty is half
the round trip rounded up: the bound ``|offset_ns - θ| <= uncertainty_ns`` holds exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ClockSample:
    """One round trip: coordinator clock before, agent clock, coordinator clock after (ns)."""

    sent_ns: int
    agent_ns: int
    received_ns: int

    @property
    def rtt_ns(self) -> int:
        return self.received_ns - self.sent_ns

    @property
    def offset_ns(self) -> int:
        """Agent clock minus coordinator clock, from this sample alone."""
        return self.agent_ns - (self.sent_ns + self.received_ns) // 2

    @property
    def uncertainty_ns(self) -> int:
        return (self.rtt_ns + 1) // 2


@dataclass(frozen=True)
class ClockEstimate:
    """``agent clock = coordinator clock + offset_ns``, within ± ``uncertainty_ns``."""

    offset_ns: int
    uncertainty_ns: int
    rtt_ns: int
    samples: int

    def describe(self) -> str:
        """E.g. ``+1.234 ms ± 0.105 ms (rtt 0.210 ms, 8 samples)``."""
        return (
            f"{self.offset_ns / 1e6:+.3f} ms ± {self.uncertainty_ns / 1e6:.3f} ms "
            f"(rtt {self.rtt_ns / 1e6:.3f} ms, {self.samples} samples)"
        )


def estimate_offset(samples: Iterable[ClockSample]) -> ClockEstimate:
    """Estimate the offset from the sample with the smallest round trip.

    Raises ``ValueError`` for no samples, or for a sample received before it was sent (its
    timestamps did not come from one monotonic reading of the clock).
    """
    chosen: ClockSample | None = None
    count = 0
    for sample in samples:
        if sample.received_ns < sample.sent_ns:
            raise ValueError(
                f"clock sample received before it was sent: sent_ns={sample.sent_ns}, "
                f"received_ns={sample.received_ns}"
            )
        count += 1
        if chosen is None or _rank(sample) < _rank(chosen):
            chosen = sample
    if chosen is None:
        raise ValueError("cannot estimate a clock offset from no samples")
    return ClockEstimate(
        offset_ns=chosen.offset_ns,
        uncertainty_ns=chosen.uncertainty_ns,
        rtt_ns=chosen.rtt_ns,
        samples=count,
    )


def to_agent_time(coordinator_ns: int, estimate: ClockEstimate) -> int:
    """The agent clock's reading at the instant the coordinator clock reads ``coordinator_ns``."""
    return coordinator_ns + estimate.offset_ns


def to_coordinator_time(agent_ns: int, estimate: ClockEstimate) -> int:
    """The coordinator clock's reading at the instant the agent clock reads ``agent_ns``."""
    return agent_ns - estimate.offset_ns


def _rank(sample: ClockSample) -> tuple[int, int, int]:
    return (sample.rtt_ns, sample.sent_ns, sample.agent_ns)
