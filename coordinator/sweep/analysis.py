"""The sweep report's figures, from the index alone. Pure.

Only *clean* cells are ranked (complete, and no flagged verdict or mark that keeps a cell out
of a comparison: client-bound, unstable, skewed start, errors above the threshold, no common
window; :attr:`CellRecord.clean`). Flagged cells are listed with their flags, never ranked.
Nor is the cell that stopped a rate ramp: it did not sustain its rate within the SLO.

The **knee** of an inventory's throughput-versus-latency curve is its clean cell of highest
*power*, throughput ÷ p99 (Kleinrock's optimal operating point): below it, more load buys
throughput for little latency; past it, latency grows faster than throughput.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.sweep.index import CellRecord, SweepIndex
from coordinator.sweep.plan import RATE_PATH


@dataclass(frozen=True)
class InventorySummary:
    """One inventory's verdict in the sweep."""

    inventory: str
    labels: dict[str, str]
    price_per_hour: float | None
    cells: int
    clean: int
    flagged: int
    knee: CellRecord | None
    """The clean cell of highest throughput ÷ p99."""
    best_within_bound: CellRecord | None
    """The clean cell of highest throughput whose p99 meets the bound (None without a bound)."""
    sustainable: CellRecord | None
    """For a ramp: the highest clean rate below the one that stopped it."""

    @property
    def ops_per_price(self) -> float | None:
        """ops/s per price per hour of the best cell within the bound (else of the knee)."""
        cell = self.best_within_bound or self.knee
        if cell is None or cell.headline is None or self.price_per_hour is None:
            return None
        return cell.headline.ops_per_sec / self.price_per_hour


@dataclass(frozen=True)
class SweepSummary:
    """Every inventory's summary, and the cheapest one meeting the latency bound."""

    inventories: list[InventorySummary]
    p99_bound_usec: float | None
    cheapest: InventorySummary | None
    """The lowest price per hour among the inventories with a clean cell within the bound."""
    best_value: InventorySummary | None
    """The highest ops/s per price per hour among them."""


def knee(cells: Sequence[CellRecord]) -> CellRecord | None:
    """The clean cell of highest throughput ÷ p99 (see the module doc)."""
    ranked = [cell for cell in cells if _rankable(cell) and cell.headline is not None
              and cell.headline.p99_usec > 0]
    return max(ranked, key=_power, default=None)


def _rankable(cell: CellRecord) -> bool:
    """Clean, and not the rate at which a ramp stopped (a rate not sustained)."""
    return cell.clean and cell.ramp_stop is None


def _power(cell: CellRecord) -> float:
    if cell.headline is None or cell.headline.p99_usec <= 0:
        return 0.0
    return cell.headline.ops_per_sec / cell.headline.p99_usec


def _throughput(cell: CellRecord) -> float:
    return cell.headline.ops_per_sec if cell.headline is not None else 0.0


def summarise(index: SweepIndex, p99_bound_s: float | None) -> SweepSummary:
    """The report's figures for ``index``, judged against ``p99_bound_s`` (None: no bound)."""
    bound_usec = p99_bound_s * 1e6 if p99_bound_s is not None else None
    names = list(dict.fromkeys(cell.inventory for cell in index.cells))
    summaries = []
    for name in names:
        cells = [cell for cell in index.cells if cell.inventory == name]
        clean = [cell for cell in cells if cell.clean]
        within = [cell for cell in clean if _rankable(cell) and bound_usec is not None
                  and cell.headline is not None and cell.headline.p99_usec <= bound_usec]
        summaries.append(InventorySummary(
            inventory=name, labels=cells[0].labels, price_per_hour=cells[0].price_per_hour,
            cells=len(cells), clean=len(clean),
            flagged=sum(1 for cell in cells if cell.flags), knee=knee(cells),
            best_within_bound=max(within, key=_throughput, default=None),
            sustainable=_sustainable(cells)))
    priced = [s for s in summaries if s.best_within_bound is not None
              and s.price_per_hour is not None]
    cheapest = min(priced, key=_cost_then_throughput, default=None)
    best_value = max(priced, key=lambda s: s.ops_per_price or 0.0, default=None)
    return SweepSummary(summaries, bound_usec, cheapest, best_value)


def _cost_then_throughput(summary: InventorySummary) -> tuple[float, float]:
    best = summary.best_within_bound
    return (summary.price_per_hour or 0.0, -(_throughput(best) if best is not None else 0.0))


def _sustainable(cells: Sequence[CellRecord]) -> CellRecord | None:
    """The highest rate of a ramp sustained cleanly: below the cell that stopped the ramp."""
    ramp = sorted((cell for cell in cells if cell.ramp_step is not None),
                  key=lambda cell: cell.ramp_step or 0)
    best = None
    for cell in ramp:
        if cell.ramp_stop is not None or cell.status != "complete":
            break
        if cell.clean and RATE_PATH in cell.parameters:
            best = cell
    return best
