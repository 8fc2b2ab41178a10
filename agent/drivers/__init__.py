"""Load drivers: one module per load generator, one interface (:mod:`agent.drivers.base`).

:data:`DRIVERS` maps a spec's ``driver`` name to the factory of a fresh driver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from agent.drivers.base import Driver
from agent.drivers.builtin import BuiltinDriver
from agent.drivers.http_driver import HttpDriver
from agent.drivers.memtier import MemtierDriver
from agent.drivers.redis_benchmark import RedisBenchmarkDriver

DRIVERS: Final[Mapping[str, Callable[[], Driver]]] = {
    BuiltinDriver.name: BuiltinDriver,
    RedisBenchmarkDriver.name: RedisBenchmarkDriver,
    MemtierDriver.name: MemtierDriver,
    HttpDriver.name: HttpDriver,
}
