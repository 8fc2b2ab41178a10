"""A Redis Cluster's figures per primary across repetitions, pure: what the terminal summary
and the report show so that an unbalanced cluster (one hot shard) is visible.

Each repetition holds, per primary, the replies it gave in the window, their rate and latencies
(``Repetition.shards``, merged over agents). A row here is one primary: the median over
repetitions of its rate and of its p50 and p99, and its share of every reply of the run.
Against an even spread (1 / primaries), ``share * primaries`` says how hot a shard is: 1.0 is
its fair part, 2.0 twice that.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.core.figures import Repetition


@dataclass(frozen=True)
class ShardRow:
    """One primary over the run's repetitions."""

    shard: str
    ops_per_sec: float
    share: float
    p50_usec: float
    p99_usec: float
    primaries: int

    @property
    def load_factor(self) -> float:
        """Its share against an even spread: 1.0 is its fair part."""
        return self.share * self.primaries


def shard_rows(repetitions: Sequence[Repetition]) -> list[ShardRow]:
    """One row per primary seen in any repetition, in name order; empty for a single server."""
    names = sorted({name for repetition in repetitions for name in repetition.shards})
    total = sum(shard.count for repetition in repetitions for shard in repetition.shards.values())
    rows = []
    for name in names:
        records = [r.shards[name] for r in repetitions if name in r.shards]
        count = sum(record.count for record in records)
        rows.append(ShardRow(
            shard=name,
            ops_per_sec=statistics.median(record.ops_per_sec for record in records),
            share=count / total if total else 0.0,
            p50_usec=statistics.median(record.latency_usec.p50 for record in records),
            p99_usec=statistics.median(record.latency_usec.p99 for record in records),
            primaries=len(names),
        ))
    return rows


SHARD_HEADERS = ("primary", "ops/s", "share", "× even", "p50 ms", "p99 ms")


def shard_cells(row: ShardRow) -> tuple[str, ...]:
    """A row's cells under :data:`SHARD_HEADERS`, as the terminal and the report print them."""
    return (row.shard, f"{row.ops_per_sec:,.0f}", f"{row.share:.1%}", f"{row.load_factor:.2f}",
            f"{row.p50_usec / 1000:,.3f}", f"{row.p99_usec / 1000:,.3f}")
