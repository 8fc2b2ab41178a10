"""How long a sweep will take, before it runs (``--dry-run``) and while it runs (the time
left). Pure: from each cell's inventory, with fixed allowances for what coord does around the
load, and from the cells already timed once some are."""

from __future__ import annotations

from collections.abc import Sequence

from coordinator.inventory.schema import Inventory

FLEET_START_S = 10.0
"""Starting an inventory's agents (deploy from cache, clock sampling): once per inventory."""
CELL_OVERHEAD_S = 3.0
"""Per cell: run lock, platform description, results written."""
REPETITION_OVERHEAD_S = 2.0
"""Per repetition: prepare, T0 margin, drain, collect and merge."""


def cell_seconds(inventory: Inventory) -> float:
    """One cell's expected duration: repetitions, the baselines before and after, overheads."""
    benchmark = inventory.benchmark
    load = benchmark.repetitions * (benchmark.warmup + benchmark.duration
                                    + REPETITION_OVERHEAD_S)
    baseline = inventory.baseline
    if not baseline.enabled:
        return load + CELL_OVERHEAD_S
    clients = len(inventory.clients)
    servers = len(inventory.server_hosts)
    pairs = (len(inventory.hosts) * (len(inventory.hosts) - 1) if baseline.pairs == "all"
             else clients * servers)
    return load + CELL_OVERHEAD_S + 2 * pairs * baseline.iterations * baseline.duration


def sweep_seconds(cells: Sequence[tuple[str, Inventory]]) -> float:
    """The whole sweep: every cell, and one fleet start per inventory that has cells to run."""
    inventories = {name for name, _ in cells}
    return len(inventories) * FLEET_START_S + sum(cell_seconds(inv) for _, inv in cells)


def seconds_left(remaining: Sequence[tuple[str, Inventory]], done_seconds: Sequence[float],
                 done_estimates: Sequence[float]) -> float:
    """The estimate for the remaining cells, scaled by how the cells done so far compared with
    their estimates (a slow machine makes every cell slower alike)."""
    scale = 1.0
    if done_seconds and sum(done_estimates) > 0:
        scale = sum(done_seconds) / sum(done_estimates)
    return scale * sum(cell_seconds(inv) for _, inv in remaining)
