"""What an agent says of its load while it runs: the live snapshot the run's view shows.

Pure data (no rpyc, no I/O): ``remote.agent_link`` decodes the agent's answer into it, and the
run and its terminal view read it without importing the link.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoadProgress:
    """``load_progress()``: a live snapshot of the agent's load.

    ``state``: idle, preparing, prepared, running, finished, stopped or failed. ``interval``:
    the last interval every load process finished (None before the first), with its
    ``phase``, ``ops_per_sec`` and ``p99_usec`` over all commands; ``errors``: every error so
    far; ``problem``: why a failed load failed.
    """

    state: str
    interval: int | None
    phase: str | None
    ops_per_sec: float | None
    p99_usec: float | None
    errors: int
    problem: str | None
