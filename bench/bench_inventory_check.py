"""`coord inventory check` on large inventories: is checking linear in the number of hosts?

Generates inventories of 7,500 to 60,000 client hosts (plus one server host), and times, per
size, in this process: ``load_inventory`` (read, parse, validate, cross-field checks) and the
rendering of what `inventory check` prints (``inventory_summary``, to a string). Prints
seconds and microseconds per host; linear checking keeps the per-host figure flat as the size
doubles (the ``x`` column is the ratio of each size's time to the previous size's: ~2.0 is
linear, ~4.0 quadratic). Issue 7 item 6: 60,000 hosts used to take 62 s.

    .venv/bin/python bench/bench_inventory_check.py [--sizes 7500,15000,30000,60000] [--rounds 3]

Needs no lab and no root; results on stdout, progress (``#``) on stderr.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from coordinator.inventory.loader import load_inventory
from coordinator.inventory.summary import inventory_summary


def inventory_text(clients: int) -> str:
    """One server host and ``clients`` client hosts, each at its own address."""
    lines = ["version: 1", "name: big", "hosts:",
             "  - name: server", "    address: 10.0.0.1", "    roles: [server]"]
    for index in range(clients):
        address = f"11.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"
        lines += [f"  - name: client{index}", f"    address: {address}",
                  "    roles: [client]"]
    lines += ["servers:", "  - name: redis", "    host: server", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="7500,15000,30000,60000")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"{'hosts':>7} {'bytes':>10} {'load s':>8} {'us/host':>8} {'x':>5} "
          f"{'render s':>9} {'total s':>8}")
    previous: float | None = None
    with tempfile.TemporaryDirectory() as directory:
        for size in sizes:
            path = Path(directory) / f"hosts-{size}.yaml"
            path.write_text(inventory_text(size))
            loads, renders = [], []
            for round_ in range(args.rounds):
                print(f"# {size} hosts, round {round_ + 1}", file=sys.stderr)
                started = time.perf_counter()
                loaded = load_inventory(path)
                loads.append(time.perf_counter() - started)
                console = Console(file=io.StringIO(), width=160)
                started = time.perf_counter()
                console.print(inventory_summary(loaded))
                renders.append(time.perf_counter() - started)
            load_s, render_s = statistics.median(loads), statistics.median(renders)
            ratio = f"{load_s / previous:5.2f}" if previous else "    -"
            previous = load_s
            print(f"{size:>7} {path.stat().st_size:>10} {load_s:>8.2f} "
                  f"{load_s / size * 1e6:>8.1f} {ratio} {render_s:>9.3f} "
                  f"{load_s + render_s:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
