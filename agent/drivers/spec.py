"""The load spec the coordinator sends to ``prepare_load``, parsed and checked. Pure.

Format 2 (JSON text; every field required, unknown fields refused)::

    {"format": 2, "driver": "builtin",
     "target": {"address": "198.18.0.10", "port": 6379, "password": null, "username": null,
                "tls": null, "source_address": null},
     "timeline": {"interval_ns": 1000000000, "warmup_intervals": 2, "measure_intervals": 10,
                  "drain_ns": 10000000000},
     "histogram": {"lowest_usec": 1, "highest_usec": 60000000, "significant_figures": 3},
     "params": {...}}

``target.source_address`` (optional, null by default) is the local address the load's
connections bind to. Optional too, and sent only when not the default: ``target.db`` (0: the
database ``SELECT``-ed), ``target.protocol`` (2: RESP2; 3: ``HELLO 3``) and ``target.cluster``
(true: a Redis Cluster, the address and port one of its nodes). ``params`` belongs to the
driver named by ``driver``, which parses it.
The phases travel as whole intervals (:class:`Timeline`), computed once by the coordinator:
intervals are the unit in which every agent's data is lined up, so no agent converts seconds
back into intervals. ``timeline.drain_ns`` (optional, 10 s when absent) bounds the end-of-phase
drain: how long a load waits, at the planned end, for the replies still in flight. Every
problem is a ``DriverError("config", ...)`` naming the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from agent.drivers.errors import KIND_CONFIG, DriverError
from agent.histograms import HistogramParams

#: The spec format this agent reads (2: phases as a :class:`Timeline` of whole intervals).
SPEC_FORMAT: Final = 2
#: Longest interval accepted (a sanity bound: intervals are seconds, not hours).
MAX_INTERVAL_NS: Final = 3600 * 1_000_000_000
#: The drain limit when the spec gives none.
DEFAULT_DRAIN_NS: Final = 10 * 1_000_000_000
#: Longest drain limit accepted (the inventory's ``benchmark.drain_timeout`` bound).
MAX_DRAIN_NS: Final = 600 * 1_000_000_000
#: RESP2 unless the target says otherwise.
DEFAULT_PROTOCOL: Final = 2
#: Databases a target may ``SELECT`` (Redis's default ``databases 16``; a server configured
#: with fewer refuses the SELECT, one line at prepare).
MAX_DB: Final = 1_000_000


@dataclass(frozen=True)
class Target:
    """The server under load. ``tls`` is passed through for the driver to accept or refuse;
    ``source_address`` is the local address the load leaves from (None: the kernel's choice)."""

    address: str
    port: int
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    tls: Mapping[str, Any] | None = None
    source_address: str | None = None
    db: int = 0
    protocol: int = 2
    cluster: bool = False

    def builtin_only(self) -> list[str]:
        """The options set that only the builtin driver implements (an external tool given
        them would silently load something else: one database, one protocol, one node)."""
        return [name for name, value in (("db", self.db), ("protocol", self.protocol != 2),
                                         ("cluster", self.cluster)) if value]

    @property
    def endpoint(self) -> str:
        """``address:port`` (``[v6]:port`` for an IPv6 address), as messages show it."""
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "password": self.password,
            "username": self.username,
            "tls": dict(self.tls) if self.tls is not None else None,
            "source_address": self.source_address,
            **({"db": self.db} if self.db else {}),
            **({"protocol": self.protocol} if self.protocol != DEFAULT_PROTOCOL else {}),
            **({"cluster": True} if self.cluster else {}),
        }


#: How load processes wait for T0 (agent.drivers.kit.timed; measured in docs/methodology.md).
SPIN: Final = "spin"
SLEEP_SPIN: Final = "sleep-spin"
SLEEP: Final = "sleep"
START_WAITS: Final = (SPIN, SLEEP_SPIN, SLEEP)
#: The way every run waits; the others exist for bench/bench_start_skew.py.
DEFAULT_START_WAIT: Final = SLEEP_SPIN


@dataclass(frozen=True)
class Timeline:
    """Intervals counted from T0: ``warmup_intervals`` of warm-up, then ``measure_intervals``
    of measure. Interval ``k`` covers ``[t0 + k * interval_ns, t0 + (k + 1) * interval_ns)``.
    ``drain_ns``: at the planned end, how long the load may wait for the replies still in
    flight (they count in the last interval; those that never come are ``timeout`` errors).
    ``start_wait`` is how load processes wait for T0 (one of :data:`START_WAITS`)."""

    interval_ns: int
    warmup_intervals: int
    measure_intervals: int
    drain_ns: int = DEFAULT_DRAIN_NS
    start_wait: str = DEFAULT_START_WAIT

    @property
    def intervals(self) -> int:
        return self.warmup_intervals + self.measure_intervals

    @property
    def total_ns(self) -> int:
        """From T0 to the end of the measure phase."""
        return self.interval_ns * self.intervals

    @property
    def total_s(self) -> float:
        return self.total_ns / 1e9

    @property
    def drain_s(self) -> float:
        return self.drain_ns / 1e9

    def phase(self, index: int) -> str:
        return "warmup" if index < self.warmup_intervals else "measure"

    def to_json(self) -> dict[str, int | str]:
        fields: dict[str, int | str] = {
            "interval_ns": self.interval_ns,
            "warmup_intervals": self.warmup_intervals,
            "measure_intervals": self.measure_intervals,
            "drain_ns": self.drain_ns,
        }
        if self.start_wait != DEFAULT_START_WAIT:  # only a benchmark asks for another
            fields["start_wait"] = self.start_wait
        return fields

    @classmethod
    def from_json(cls, fields: Mapping[str, Any]) -> Timeline:
        reader = Fields(fields, "spec.timeline")
        timeline = cls(
            interval_ns=reader.integer("interval_ns", minimum=1, maximum=MAX_INTERVAL_NS),
            warmup_intervals=reader.integer("warmup_intervals", minimum=0),
            measure_intervals=reader.integer("measure_intervals", minimum=1),
            drain_ns=(reader.integer("drain_ns", minimum=0, maximum=MAX_DRAIN_NS)
                      if reader.has("drain_ns") else DEFAULT_DRAIN_NS),
            start_wait=(reader.text("start_wait") if reader.has("start_wait")
                        else DEFAULT_START_WAIT),
        )
        if timeline.start_wait not in START_WAITS:
            raise DriverError(KIND_CONFIG, f"spec.timeline.start_wait: {timeline.start_wait!r} "
                              f"is not one of {', '.join(START_WAITS)}")
        reader.no_more()
        return timeline


@dataclass(frozen=True)
class LoadSpec:
    driver: str
    target: Target
    histogram: HistogramParams
    params: Mapping[str, Any]
    timeline: Timeline


def parse_spec(text: str) -> LoadSpec:
    """Parse the spec's JSON text; ``DriverError("config", ...)`` for anything wrong."""
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise DriverError(KIND_CONFIG, f"the load spec is not JSON: {exc}") from None
    fields = Fields(data, "spec")
    spec_format = fields.get("format")
    if type(spec_format) is not int or spec_format != SPEC_FORMAT:
        raise DriverError(
            KIND_CONFIG,
            f"load spec format {spec_format!r} is not supported by this agent "
            f"(it reads format {SPEC_FORMAT})",
        )
    driver = fields.text("driver")
    target = parse_target(fields.object("target"))
    timeline = Timeline.from_json(fields.object("timeline"))
    try:
        histogram = HistogramParams.from_json(fields.object("histogram"))
    except ValueError as exc:
        raise DriverError(KIND_CONFIG, f"spec.{exc}") from None
    params = fields.object("params")
    fields.no_more()
    return LoadSpec(
        driver=driver,
        target=target,
        histogram=histogram,
        params=params,
        timeline=timeline,
    )


def parse_target(data: Mapping[str, Any]) -> Target:
    fields = Fields(data, "spec.target")
    target = Target(
        address=fields.text("address"),
        port=fields.integer("port", minimum=1, maximum=65535),
        password=fields.optional_text("password"),
        username=fields.optional_text("username"),
        tls=fields.optional_object("tls"),
        source_address=(
            fields.optional_text("source_address") if fields.has("source_address") else None
        ),
        db=fields.integer("db", minimum=0, maximum=MAX_DB) if fields.has("db") else 0,
        protocol=(fields.integer("protocol", minimum=2, maximum=3) if fields.has("protocol")
                  else DEFAULT_PROTOCOL),
        cluster=fields.boolean("cluster") if fields.has("cluster") else False,
    )
    fields.no_more()
    if target.cluster and target.db:
        raise DriverError(KIND_CONFIG, "spec.target.db must be 0 for a cluster (Redis Cluster "
                          "has only database 0)")
    if target.source_address == "":
        raise fields.problem("source_address", "must be an address or null, got ''")
    if target.username is not None and target.password is None:
        raise DriverError(KIND_CONFIG, "spec.target.username needs a password")
    return target


class Fields:
    """Typed reads from one JSON object; every surprise is ``DriverError("config", ...)``
    naming the field (``where.key``)."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise DriverError(KIND_CONFIG, f"{where} must be a JSON object")
        self._data: dict[str, Any] = data
        self._where = where
        self._read: set[str] = set()

    def problem(self, key: str, what: str) -> DriverError:
        return DriverError(KIND_CONFIG, f"{self._where}.{key} {what}")

    def has(self, key: str) -> bool:
        return key in self._data

    def get(self, key: str) -> Any:
        if key not in self._data:
            raise DriverError(KIND_CONFIG, f"{self._where}.{key} is missing")
        self._read.add(key)
        return self._data[key]

    def text(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str) or not value:
            raise self.problem(key, f"must be a non-empty string, got {value!r}")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.problem(key, f"must be a string or null, got {type(value).__name__}")
        return value

    def integer(self, key: str, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.get(key)
        if type(value) is not int:
            raise self.problem(key, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.problem(key, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.problem(key, f"must be at most {maximum}, got {value}")
        return value

    def optional_integer(self, key: str, minimum: int | None = None) -> int | None:
        if self.get(key) is None:
            return None
        return self.integer(key, minimum)

    def number(
        self,
        key: str,
        minimum: float | None = None,
        maximum: float | None = None,
        *,
        exclusive: bool = False,
    ) -> float:
        value = self.get(key)
        try:
            number = float(value) if type(value) in (int, float) else math.nan
        except OverflowError:  # an integer beyond any float
            number = math.nan
        if not math.isfinite(number):
            raise self.problem(key, f"must be a number, got {value!r}")
        if minimum is not None and (number <= minimum if exclusive else number < minimum):
            relation = "more than" if exclusive else "at least"
            raise self.problem(key, f"must be {relation} {minimum:g}, got {number:g}")
        if maximum is not None and number > maximum:
            raise self.problem(key, f"must be at most {maximum:g}, got {number:g}")
        return number

    def boolean(self, key: str) -> bool:
        value = self.get(key)
        if type(value) is not bool:
            raise self.problem(key, f"must be true or false, got {value!r}")
        return value

    def object(self, key: str) -> dict[str, Any]:
        value = self.get(key)
        if not isinstance(value, dict):
            raise self.problem(key, "must be a JSON object")
        return value

    def optional_object(self, key: str) -> dict[str, Any] | None:
        return None if self.get(key) is None else self.object(key)

    def no_more(self) -> None:
        extra = sorted(set(self._data) - self._read)
        if extra:
            raise DriverError(
                KIND_CONFIG, f"{self._where} has unknown field(s): {', '.join(extra)}"
            )
