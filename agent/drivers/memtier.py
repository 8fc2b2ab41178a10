"""The memtier driver: Redis Ltd's memtier_benchmark on the driver kit.

``params``: :mod:`agent.drivers.memtier_command`'s plus ``warmup_s`` (seconds of a separate,
unmeasured run first; 0: none). One load process per host (:mod:`agent.drivers.memtier_load`)
runs the tool, whose ``--threads`` and ``--clients`` spread the load. Before any process
starts, the tool must be on this host's PATH: otherwise one line saying how to install it.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Final

from agent.drivers.base import KIND_CONFIG, DriverError, Prepared, no_keepalive
from agent.drivers.kit.process_driver import ProcessDriver, ProcessPlan
from agent.drivers.memtier_command import BINARY, MemtierParams, parse_params
from agent.drivers.memtier_load import MODULE
from agent.drivers.spec import LoadSpec

INSTALL_HINT: Final = (
    "install it from Redis's APT repository (packages.redis.io: apt-get install "
    "memtier-benchmark) or build it from source (docs/drivers.md)"
)
VERSION_TIMEOUT_S: Final = 10.0


def driver_params(spec: LoadSpec) -> MemtierParams:
    params = dict(spec.params)
    warmup = params.pop("warmup_s", None)
    if type(warmup) not in (int, float) or warmup < 0:
        raise DriverError(KIND_CONFIG, f"spec.params.warmup_s must be a number >= 0, got "
                          f"{warmup!r}")
    return parse_params(params)


class MemtierDriver(ProcessDriver):
    name = "memtier"
    version = BINARY
    process_module = MODULE

    def __init__(self, which: Callable[[str], str | None] = shutil.which) -> None:
        super().__init__()
        self._which = which
        self._binary: str | None = None

    def plan_load(self, spec: LoadSpec) -> Sequence[ProcessPlan]:
        params = driver_params(spec)
        binary = self._which(BINARY)
        if binary is None:
            raise DriverError(KIND_CONFIG, f"{BINARY} is not on PATH: {INSTALL_HINT}")
        self._binary = binary
        config = {
            "binary": binary,
            "target": spec.target.to_json(),
            "params": dict(spec.params),
            "timeline": spec.timeline.to_json(),
            "histogram": spec.histogram.to_json(),
        }
        return [ProcessPlan(params.connections, config)]

    def pipeline(self, spec: LoadSpec) -> int | None:
        return driver_params(spec).pipeline

    def prepare(self, spec: LoadSpec, keepalive: Callable[[], None] = no_keepalive) -> Prepared:
        prepared = super().prepare(spec, keepalive)
        binary = self._binary or BINARY
        try:
            done = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                  timeout=VERSION_TIMEOUT_S, check=False)
            version = (done.stdout.strip().splitlines() or [BINARY])[0]
        except (OSError, subprocess.TimeoutExpired):
            version = BINARY
        return dataclasses.replace(prepared, driver_version=version, interpreter=binary)
