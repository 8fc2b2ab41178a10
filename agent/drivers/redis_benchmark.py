"""The redis-benchmark driver: Redis's own load tool on the driver kit.

``params``: :mod:`agent.drivers.redis_benchmark_plan`. One load process per host
(:mod:`agent.drivers.redis_benchmark_load`) runs the tool, whose own ``--threads`` and ``-c``
spread the load; everything else is the kit's (:class:`ProcessDriver`). Before any process
starts, the tool must be on this host's PATH: otherwise one line saying how to install it.

What the results say of the run (``ran_with``): the tool and its version as
``driver_version``, with how ``-n`` was chosen (given, or sized by calibration and at what
rate); the tool's path as ``interpreter``.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Any, Final

from agent.drivers.base import KIND_CONFIG, DriverError, Prepared, no_keepalive
from agent.drivers.kit.process_driver import ProcessDriver, ProcessPlan
from agent.drivers.redis_benchmark_command import BINARY
from agent.drivers.redis_benchmark_load import MODULE
from agent.drivers.redis_benchmark_plan import parse_driver_params
from agent.drivers.spec import LoadSpec

INSTALL_HINT: Final = (
    "install redis-tools (Debian/Ubuntu: apt-get install redis-tools) or put a Redis build's "
    "redis-benchmark on the agent's PATH"
)
VERSION_TIMEOUT_S: Final = 10.0


def tool_version(binary: str) -> str:
    """``redis-benchmark --version``'s line (``redis-benchmark 7.0.15``)."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True,
                              timeout=VERSION_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DriverError(KIND_CONFIG, f"{binary} --version failed: {exc}") from None
    return (done.stdout.strip().splitlines() or [BINARY])[0]


class RedisBenchmarkDriver(ProcessDriver):
    name = "redis-benchmark"
    version = BINARY
    process_module = MODULE

    def __init__(self, which: Callable[[str], str | None] = shutil.which) -> None:
        super().__init__()
        self._which = which
        self._binary: str | None = None
        self._sizing = "requests as given"

    def plan_load(self, spec: LoadSpec) -> Sequence[ProcessPlan]:
        params = parse_driver_params(spec.params)
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
        return [ProcessPlan(params.tool.clients, config)]

    def pipeline(self, spec: LoadSpec) -> int | None:
        return parse_driver_params(spec.params).tool.pipeline

    def prepare(self, spec: LoadSpec, keepalive: Callable[[], None] = no_keepalive) -> Prepared:
        prepared = super().prepare(spec, keepalive)
        binary = self._binary or BINARY
        return dataclasses.replace(
            prepared,
            driver_version=f"{tool_version(binary)}; {self._sizing}",
            interpreter=binary,
        )

    def on_message(self, index: int, message: dict[str, Any]) -> None:
        if message["type"] == "sized":
            self._sizing = (f"-n {int(message['requests'])} sized by calibration at "
                            f"{float(message['rate']):.0f} requests/s")
            return
        super().on_message(index, message)
