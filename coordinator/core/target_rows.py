"""A run loading several servers at once (``benchmark.targets``), one row per server across
repetitions, pure: what the terminal summary and the report show beside the run's own
figures (which are the first target's, docs/results.md).

Each repetition holds, per server, its clients' figures merged over the common window
(``Repetition.targets``). A row is one server: the median over repetitions of its rate, p50
and p99, and its errors summed over repetitions.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.core.figures import Repetition


@dataclass(frozen=True)
class TargetRow:
    """One server over the run's repetitions."""

    server: str
    driver: str
    clients: tuple[str, ...]
    ops_per_sec: float
    p50_usec: float
    p99_usec: float
    errors: int


def target_rows(repetitions: Sequence[Repetition]) -> list[TargetRow]:
    """One row per server, in the order the first repetition lists them (the order of
    ``benchmark.targets``); empty for a run loading one server."""
    names = list(dict.fromkeys(name for repetition in repetitions
                               for name in repetition.targets))
    rows = []
    for name in names:
        records = [r.targets[name] for r in repetitions if name in r.targets]
        rows.append(TargetRow(
            server=name, driver=records[0].driver, clients=tuple(records[0].clients),
            ops_per_sec=statistics.median(record.ops_per_sec for record in records),
            p50_usec=statistics.median(record.latency_usec.p50 for record in records),
            p99_usec=statistics.median(record.latency_usec.p99 for record in records),
            errors=sum(sum(record.errors.values()) for record in records),
        ))
    return rows


TARGET_HEADERS = ("server", "driver", "clients", "ops/s", "p50 ms", "p99 ms", "errors")


def target_cells(row: TargetRow) -> tuple[str, ...]:
    """A row's cells under :data:`TARGET_HEADERS`, as the terminal and the report print them."""
    return (row.server, row.driver, ", ".join(row.clients), f"{row.ops_per_sec:,.0f}",
            f"{row.p50_usec / 1000:,.3f}", f"{row.p99_usec / 1000:,.3f}", f"{row.errors:,}")
