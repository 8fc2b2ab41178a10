"""What the tests of the external tools' drivers (redis-benchmark, memtier_benchmark) share:
the load spec an agent gets, a driver that leaves nothing running, a load run to its end,
Redis's own per-command call counts, and an inventory whose client has no tool on its PATH.
One copy here, so the two tools' tests cannot drift apart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import redis
import yaml

from agent.drivers.intervals import LoadReport
from agent.drivers.spec import parse_spec
from tests.helpers import poll_until, process_gone

DEADLINE = 120.0
START_MARGIN_NS = 200_000_000
"""T0 this far ahead of now: the driver's prepare is done, its tool is spawned at T0."""


class ToolDriver(Protocol):
    """The part of a tool driver (RedisBenchmarkDriver, MemtierDriver) the helpers use."""

    @property
    def state(self) -> Any: ...

    def prepare(self, spec: Any) -> Any: ...

    def start_at(self, t0_ns: int) -> None: ...

    def report(self) -> LoadReport: ...

    def worker_pids(self) -> list[int]: ...

    def close(self) -> None: ...


D = TypeVar("D", bound=ToolDriver)


def tool_spec(driver: str, port: int, params: dict[str, Any], *, password: str | None,
              interval_s: float, warmup_intervals: int) -> str:
    """The spec text an agent gets for ``driver`` against loopback ``port``: one measure
    interval of ``interval_s`` after ``warmup_intervals``."""
    return json.dumps({
        "format": 2, "driver": driver,
        "target": {"address": "127.0.0.1", "port": port, "password": password,
                   "username": None, "tls": None, "source_address": None},
        "timeline": {"interval_ns": round(interval_s * 1e9),
                     "warmup_intervals": warmup_intervals, "measure_intervals": 1},
        "histogram": {"lowest_usec": 1, "highest_usec": 60_000_000, "significant_figures": 3},
        "params": params,
    })  # fmt: skip


def closed_after(made: D) -> Iterator[D]:
    """The body of a ``driver`` fixture (``yield from``): the driver, closed after the test
    and any of its load processes still alive killed."""
    yield made
    pids = made.worker_pids()
    made.close()
    for pid in pids:
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)


def start_soon(driver: ToolDriver, spec_text: str) -> float:
    """Prepare ``spec_text`` and start it at a T0 just ahead; the seconds the load lasts."""
    spec = parse_spec(spec_text)
    driver.prepare(spec)
    driver.start_at(time.time_ns() + START_MARGIN_NS)
    return float(spec.timeline.total_s)


def run_to_end(driver: ToolDriver, spec_text: str) -> LoadReport:
    """Prepare, start and wait for the load of ``spec_text`` to end; its report."""
    total_s = start_soon(driver, spec_text)
    poll_until(lambda: driver.state.done, total_s + DEADLINE, "the load to end")
    return driver.report()


def commandstats(client: redis.Redis) -> dict[str, int]:
    """Redis's own calls per command (INFO commandstats), lower-case names."""
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


@contextmanager
def inventory_without_tools(inventory: Path, host: str, directory: Path) -> Iterator[Path]:
    """A copy of the lab ``inventory`` whose ``host`` starts its agent with a PATH holding no
    tool (a wrapper around the interpreter); the wrapper's directory is removed after."""
    wrapper_dir = Path(tempfile.mkdtemp(prefix="coord-no-tool-"))
    try:
        wrapper_dir.chmod(0o755)  # the lab host's user runs the wrapper
        wrapper = wrapper_dir / "python3"
        wrapper.write_text(f'#!/bin/sh\nPATH={wrapper_dir} exec /usr/bin/python3 "$@"\n')
        wrapper.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        document = yaml.safe_load(inventory.read_text())
        for entry in document["hosts"]:
            if entry["name"] == host:
                entry["python"] = str(wrapper)
        path = directory / "no-tool.yaml"
        path.write_text(yaml.safe_dump(document))
        yield path
    finally:
        shutil.rmtree(wrapper_dir)
