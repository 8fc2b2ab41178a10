"""When an open-loop rate ramp stops: the first rate whose p99 is over the bound, whose clients
fell behind their send schedule, or whose achieved throughput fell behind the rate asked for.
Pure."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.sweep.index import CellRecord
from coordinator.sweep.plan import RATE_PATH, Ramp


@dataclass(frozen=True)
class RampStop:
    """Why the ramp stopped at a cell (the cells above it are skipped)."""

    reason: str


def ramp_stop(ramp: Ramp, record: CellRecord, clients: int) -> RampStop | None:
    """None while the cell sustained its rate within the bound; a failed cell, or one without
    figures, stops the ramp too (a higher rate will not do better)."""
    rate = float(record.parameters.get(RATE_PATH, 0.0))
    headline = record.headline
    if record.status != "complete" or headline is None:
        return RampStop(f"the cell at {rate:g}/s did not complete")
    bound_usec = ramp.p99_bound * 1e6
    if headline.p99_usec > bound_usec:
        return RampStop(f"p99 {headline.p99_usec:.0f} µs over the {bound_usec:.0f} µs bound at "
                        f"{rate:g}/s per client")
    asked = rate * clients
    if headline.behind_schedule:
        sent = "" if headline.sent_per_sec is None else (
            f"; {headline.sent_per_sec:.0f}/s sent of the {asked:.0f}/s asked")
        return RampStop(f"the clients fell behind their schedule at {rate:g}/s per client "
                        f"(requests sent late or not at all{sent})")
    if headline.ops_per_sec < asked * (1 - ramp.behind_percent / 100):
        return RampStop(f"achieved {headline.ops_per_sec:.0f} ops/s, more than "
                        f"{ramp.behind_percent:g} % behind the {asked:.0f}/s asked")
    return None
