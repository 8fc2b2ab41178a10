"""What the benchmarks share: a throw-away lab, clean interruption, statistics and tables.

Every benchmark builds its own lab (``cbench``, 198.18.130.0/24 unless told otherwise), sends
traffic only to it or to loopback, and removes it in a ``finally`` whatever happens: an error,
Ctrl-C or SIGTERM (turned into ``KeyboardInterrupt``). While the lab is being removed a second
Ctrl-C is ignored, so an impatient operator cannot leave half a lab behind.

Not a test helper: nothing here asserts anything about speed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType

import coordinator
from coordinator.core.errors import CoordError, LabError
from coordinator.inventory.loader import load_inventory
from coordinator.inventory.schema import Inventory
from coordinator.lab.api import LabSpec, LabStatus, lab_down, lab_up
from coordinator.remote.deploy import DeployOptions
from coordinator.remote.fanout import FleetResult
from coordinator.remote.fleet import AgentSession, Fleet

LAB_NAME = "cbench"
LAB_SUBNET = "198.18.130.0/24"
REPO = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """The benchmark cannot go on (a host failed to deploy...): one line, no traceback."""


# --- command line and process ---------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the lab options every benchmark takes."""
    result = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    lab = result.add_argument_group("lab")
    lab.add_argument("--lab-name", default=LAB_NAME, help="name of the throw-away lab")
    lab.add_argument("--subnet", default=LAB_SUBNET, help="lab subnet, inside 198.18.0.0/15")
    deploy = result.add_argument_group("deployment")
    deploy.add_argument("--wheelhouse", type=Path, default=None,
                        help="build the agent bundle from this directory of wheels only")
    deploy.add_argument("--bundle-cache", type=Path, default=None,
                        help="local bundle cache (default: coord's own)")
    return result


def deploy_options(args: argparse.Namespace) -> DeployOptions:
    return DeployOptions(wheelhouse=args.wheelhouse, bundle_cache=args.bundle_cache)


def run_main(body: Callable[[], None]) -> int:
    """Run a benchmark: root check, SIGTERM as Ctrl-C, one-line errors; the exit status."""
    if os.geteuid() != 0:
        print("the benchmark lab needs root (network namespaces, users, sshd): run it as root",
              file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        body()
    except KeyboardInterrupt:
        print("\ninterrupted: agents stopped, lab removed", file=sys.stderr)
        return 130
    except (BenchError, CoordError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM for the duration (clean-up must finish)."""
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


# --- the lab and the fleet ------------------------------------------------------------------


@contextlib.contextmanager
def lab(clients: int, name: str = LAB_NAME,
        subnet: str = LAB_SUBNET) -> Iterator[tuple[LabStatus, Inventory]]:
    """A lab of ``clients`` clients and a server, with its inventory; always removed after."""
    workdir = Path(tempfile.mkdtemp(prefix="coord-bench-"))
    inventory_path = workdir / "hosts.yaml"
    spec = LabSpec(name=name, clients=clients, subnet=subnet)
    note(f"lab {name}: server + {clients} client{'s' if clients > 1 else ''} on {subnet} ...")
    started = time.monotonic()
    try:
        try:
            status = lab_up(spec, inventory_path)
        except LabError as exc:
            if "is already up with" not in str(exc):
                raise
            note(f"a stale lab {name} of another shape is up; removing it first")
            with uninterruptible():
                lab_down(name)
            status = lab_up(spec, inventory_path)
        note(f"lab up in {time.monotonic() - started:.1f} s")
        yield status, load_inventory(status.inventory_path).inventory
    finally:
        with uninterruptible():
            try:
                lab_down(name)
            except LabError as exc:
                print(f"could not remove the whole lab: {exc}; run `coord lab down --name "
                      f"{name}`", file=sys.stderr)
            else:
                note(f"lab {name} removed")
            shutil.rmtree(workdir, ignore_errors=True)


def check_started(result: FleetResult[AgentSession]) -> None:
    """Raise BenchError naming every host that failed to start its agent."""
    if result.failed:
        lines = "".join(
            f"\n  {host}, while {failure.stage}: {failure.error}"
            for host, failure in sorted(result.failed.items())
        )
        raise BenchError(f"agents failed to start on {len(result.failed)} host(s):{lines}")


@contextlib.contextmanager
def running_fleet(inventory: Inventory, options: DeployOptions) -> Iterator[Fleet]:
    """Agents on every lab host (every host must start), stopped on the way out."""
    fleet = Fleet(inventory, options=options)
    try:
        check_started(fleet.start())
        yield fleet
    finally:
        with uninterruptible():
            fleet.stop()


# --- output ---------------------------------------------------------------------------------


def note(text: str) -> None:
    """A progress line (stderr, so stdout holds only the results)."""
    print(f"# {text}", file=sys.stderr, flush=True)


def header(title: str) -> None:
    """Title, date and the machine the figures come from."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip() or "?"  # fmt: skip
    except OSError:
        commit = "?"
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"== {title}")
    print(f"date {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %z}; coord "
          f"{coordinator.__version__} ({commit}); python {platform.python_version()}; "
          f"{os.cpu_count()} CPUs; load average {load}")
    print()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> None:
    """A plain text table: first column left-aligned, the others right-aligned."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(h)), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [values[0].ljust(widths[0])]
        parts += [value.rjust(width) for value, width in zip(values[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    if title:
        print(title)
    print(line([str(h) for h in headers]))
    print(line(["-" * width for width in widths]))
    for row in cells:
        print(line(row))
    print()


def verdict(figure: str, value: str, target: str, met: bool) -> None:
    print(f"target: {figure} {target}; measured {value}: {'met' if met else 'NOT met'}")


def ms(seconds: float) -> str:
    """Seconds as milliseconds, 3 significant-ish digits."""
    value = seconds * 1e3
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def ratio(value: float, anchor: float) -> str:
    return f"{value / anchor:.2f}x" if anchor > 0 else "-"


# --- statistics -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)
