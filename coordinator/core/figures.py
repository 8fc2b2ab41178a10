"""The figures of a run: records that both compute themselves and serialize. Pure: no I/O.

As in pyperf's one ``Run``/``Benchmark`` model, the classes below are at once what the
statistics produce and what ``results.json`` stores: ``Latency.of(histogram)`` reads the
figures of a merged histogram, ``SummaryRecord.of(repetitions)`` summarises repetitions, and
the same objects are the document's fields (``coordinator.results.model``). No figure is
declared twice nor copied field by field into a second class.

**The latency figures are declared once**, as the fields of ``LatencyFields``: a field named
``p<digits>`` is a percentile whose level is its digits with the point after the first two
(``p50`` → 50, ``p999`` → 99.9, ``p9999`` → 99.99). ``Latency`` holds them for one histogram
(µs), ``LatencySummary`` across repetitions; ``PERCENTILES`` and ``LATENCY_FIGURES`` are
derived from the fields, and the docs, the summary table and the readers follow.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Annotated, Any, Generic, TypeVar

from hdrh.histogram import HdrHistogram
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from agent.histograms import percentiles
from coordinator.core.histograms import mean
from coordinator.core.metrics import HostMetrics
from coordinator.core.reports import Phase
from coordinator.core.verdict_records import Verdict


def _utc(value: datetime) -> datetime:
    if value.utcoffset() != timezone.utc.utcoffset(None):
        raise ValueError("must be in UTC")
    return value


def _mark(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", value):
        raise ValueError(f"a mark is lower-case words joined by '-', got {value!r}")
    return value


UTCTime = Annotated[AwareDatetime, AfterValidator(_utc)]
Mark = Annotated[str, AfterValidator(_mark)]
Histogram = str
"""An HdrHistogram in the standard compressed base64 form (V2 encoding), values in µs."""
Count = NonNegativeInt
Errors = dict[str, NonNegativeInt]


class Model(BaseModel):
    """Base of every results model: strict types, unknown keys refused, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# Latency: the one declaration of the latency figures

PercentileValue = TypeVar("PercentileValue")
MeanValue = TypeVar("MeanValue")


class LatencyFields(Model, Generic[PercentileValue, MeanValue]):
    """The latency figures, in report order (the one place they are declared)."""

    p50: PercentileValue = Field(description="median, µs")
    p90: PercentileValue = Field(description="90th percentile, µs")
    p95: PercentileValue = Field(description="95th percentile, µs")
    p99: PercentileValue = Field(description="99th percentile, µs")
    p999: PercentileValue = Field(description="99.9th percentile, µs")
    max: PercentileValue = Field(
        description="largest value recorded, µs (top of its bucket; overflowed values excluded)"
    )
    mean: MeanValue = Field(description="mean, µs")


def percentile_level(name: str) -> float:
    """The level of a percentile figure from its name: ``p999`` → 99.9 (see the module doc)."""
    digits = name[1:]
    return float(f"{digits[:2]}.{digits[2:] or 0}")


LATENCY_FIGURES: tuple[str, ...] = tuple(LatencyFields.model_fields)
"""Names of the latency figures, in report order."""
PERCENTILES: Mapping[str, float] = {
    name: percentile_level(name) for name in LATENCY_FIGURES if re.fullmatch(r"p\d+", name)
}
"""The percentiles reported for every merged histogram: figure name -> percentile level."""


class Latency(LatencyFields[NonNegativeInt, NonNegativeFloat]):
    """Latency figures of one merged histogram, µs; 0 for an empty histogram."""

    @classmethod
    def of(cls, histogram: HdrHistogram) -> Latency:
        """The figures of ``histogram``: percentiles and ``max`` are the highest value
        equivalent to the bucket reached (HdrHistogram's convention)."""
        values = percentiles(histogram, PERCENTILES.values())
        return cls.model_validate(
            {
                **{name: values[level] for name, level in PERCENTILES.items()},
                "max": int(histogram.get_max_value()),
                "mean": mean(histogram),
            }
        )


# --------------------------------------------------------------------------------------------
# Across repetitions


class SpreadRecord(Model):
    """One figure across repetitions."""

    median: float = Field(description="median over repetitions (mean of the middle two if even)")
    min: float = Field(description="smallest value")
    max: float = Field(description="largest value")
    cv: NonNegativeFloat | None = Field(
        description="coefficient of variation: sample stdev / mean (null: one repetition or "
        "zero mean)"
    )

    @classmethod
    def of(cls, values: Sequence[float]) -> SpreadRecord:
        """Median, extremes and CV (sample stdev, n - 1) of ``values`` (``ValueError`` if
        none); ``cv`` is None with fewer than two values or a zero mean."""
        if not values:
            raise ValueError("no values to summarise")
        average = statistics.fmean(values)
        cv = None
        if len(values) >= 2 and average != 0:
            cv = statistics.stdev(values) / abs(average)
        return cls(
            median=float(statistics.median(values)),
            min=float(min(values)),
            max=float(max(values)),
            cv=cv,
        )


class LatencySummary(LatencyFields[SpreadRecord, SpreadRecord]):
    """Each latency figure across repetitions, µs."""

    @classmethod
    def of(cls, latencies: Sequence[Latency]) -> LatencySummary:
        """The spread of each figure over ``latencies`` (one per repetition)."""
        return cls.model_validate(
            {
                name: SpreadRecord.of([float(getattr(latency, name)) for latency in latencies])
                for name in LATENCY_FIGURES
            }
        )


# --------------------------------------------------------------------------------------------
# One repetition


class Window(Model):
    """The common measurement window: intervals every agent measured completely."""

    first: NonNegativeInt | None = Field(description="first interval index (null: empty)")
    last: NonNegativeInt | None = Field(description="last interval index (null: empty)")
    intervals: NonNegativeInt = Field(description="number of intervals in the window")
    seconds: NonNegativeFloat = Field(
        description="intervals × interval length, s; for a one-window driver (redis-benchmark, "
        "memtier) the union span of the agents' measured runs in the coordinator's clock "
        "(each agent's ops/s divides by its own run: agents[].window_seconds)"
    )
    excluded: list[NonNegativeInt] = Field(
        description="indices between first and last left out (some agent's interval was "
        "missing, incomplete or not in its measure phase)"
    )

    @classmethod
    def of(cls, window: Sequence[int], interval_s: float) -> Window:
        """The window of these interval indices, each ``interval_s`` long."""
        indices = sorted(window)
        if not indices:
            return cls(first=None, last=None, intervals=0, seconds=0.0, excluded=[])
        kept = set(indices)
        return cls(
            first=indices[0],
            last=indices[-1],
            intervals=len(indices),
            seconds=len(indices) * interval_s,
            excluded=[i for i in range(indices[0], indices[-1] + 1) if i not in kept],
        )


class IntervalRecord(Model):
    """One sampling interval of one agent, in or out of the window."""

    index: NonNegativeInt = Field(description="interval number, counted from T0")
    phase: Phase = Field(description="the agent's phase")
    complete: bool = Field(description="the interval ran its whole length")
    in_window: bool = Field(description="part of the repetition's common window")
    count: Count = Field(description="non-error replies counted over all commands")
    requests: Count = Field(description="requests finished (error replies included)")
    errors: Errors = Field(description="errors by type (server error prefix or connection)")
    overflow: Count = Field(description="latencies beyond the histogram's range (not in it)")
    ops_per_sec: NonNegativeFloat = Field(
        description="count / interval length, replies/s (one-window driver, measured: count / "
        "the agent's run)"
    )
    p99_usec: NonNegativeInt | None = Field(
        description="99th percentile of this interval, µs (null: no reply in the interval)"
    )
    histogram: Histogram = Field(description="this interval's histogram, commands merged (µs)")
    p999_usec: NonNegativeInt | None = Field(
        None, description="99.9th percentile of this interval, µs (null: no reply in the "
        "interval, or a document older than the field)"
    )
    max_usec: NonNegativeInt | None = Field(
        None, description="largest latency of this interval, µs, late replies of the "
        "end-of-phase drain included (null: no reply, or a document older than the field)"
    )
    gap_usec: NonNegativeInt | None = Field(
        None, description="longest time one connection went without a reply, µs: between two "
        "replies, or from the last reply to the interval's end while one was awaited; a stall "
        "shows here even when no reply came (null: a document older than the field)"
    )
    sent: NonNegativeInt | None = Field(
        None, description="open loop: requests sent in this interval (the achieved rate is "
        "sent / interval length; null: a closed loop, or a document older than the field)"
    )
    late: NonNegativeInt | None = Field(
        None, description="open loop: requests sent more than 1 ms after their intended send "
        "time (null: a closed loop)"
    )
    lateness_max_usec: NonNegativeInt | None = Field(
        None, description="open loop: the largest delay of a send after its intended time, µs "
        "(null: a closed loop)"
    )
    not_sent: NonNegativeInt | None = Field(
        None, description="open loop: requests whose intended send time had passed at the "
        "interval's end but still queued behind a busy connection (null: a closed loop)"
    )
    behind_schedule: bool | None = Field(
        None, description="open loop: requests were not sent, or more than 1 % (and more than "
        "10) went out late (null: a closed loop)"
    )
    late_waiting: NonNegativeInt | None = Field(
        None, description="open loop: of late, the requests whose connection was not free at "
        "their intended send time (still awaiting its previous reply, or connecting): they "
        "queued behind the server, not behind the client (null: a closed loop, or a document "
        "older than the field)"
    )
    not_sent_waiting: NonNegativeInt | None = Field(
        None, description="open loop: of not_sent, the requests whose connection was not free "
        "(null: a closed loop, or a document older than the field)"
    )
    loop_behind: bool | None = Field(
        None, description="open loop: behind_schedule counting only the requests whose "
        "connection was free at their intended time: the load process itself fell behind, the "
        "client-bound verdict's evidence (null: a closed loop, or a document older than the "
        "field, whose behind_schedule is read instead)"
    )
    redirects: Errors | None = Field(
        None, description="Redis Cluster: MOVED and ASK replies followed in this interval, by "
        "kind; each is one re-send of a request (null: none, or not a cluster)"
    )

    @property
    def load_fell_behind(self) -> bool:
        """The load process itself fell behind its schedule: ``loop_behind``, or for a
        document older than that field ``behind_schedule`` (False for a closed loop)."""
        return bool(self.behind_schedule if self.loop_behind is None else self.loop_behind)


class AgentRepetition(Model):
    """One agent's part of a repetition."""

    host: str = Field(description="host name")
    count: Count = Field(description="non-error replies counted in the window")
    requests: Count = Field(description="requests finished in the window")
    errors: Errors = Field(description="errors by type in the window")
    error_rate: NonNegativeFloat = Field(description="errors / requests in the window, 0..1")
    overflow: Count = Field(description="latencies beyond the histogram's range, in the window")
    ops_per_sec: NonNegativeFloat = Field(
        description="count / window seconds, replies/s (one-window driver: count / "
        "window_seconds)"
    )
    window_seconds: NonNegativeFloat | None = Field(
        None, description="a one-window driver's measured run on this agent, s: the tool's own "
        "elapsed time, else its spawn to its exit (null: an interval driver, whose window is "
        "the common window's intervals, or an older document)"
    )
    latency_usec: Latency = Field(description="from this agent's merged window histogram")
    histogram: Histogram = Field(description="this agent's window histogram (µs)")
    intervals: list[IntervalRecord] = Field(
        description="every interval the agent reported, warm-up included"
    )
    gap_usec: NonNegativeInt | None = Field(
        None, description="longest gap_usec of the window's intervals, µs (null: empty window, "
        "or a document older than the field)"
    )
    sent_per_sec: NonNegativeFloat | None = Field(
        None, description="open loop: requests sent in the window / window seconds: the "
        "achieved rate (null: a closed loop, or a document older than the field)"
    )
    behind_schedule: bool | None = Field(
        None, description="open loop: some interval of the window was behind its schedule "
        "(requests not sent, or more than 1 % and 10 late): the client could not keep the rate "
        "(null: a closed loop, or a document older than the field)"
    )


class CommandRecord(Model):
    """One command type merged over all agents in the window."""

    count: Count = Field(description="non-error replies counted")
    ops_per_sec: NonNegativeFloat = Field(
        description="count / window seconds, replies/s (one-window driver: the sum over agents "
        "of their count / their own run)"
    )
    latency_usec: Latency = Field(description="from the command's merged histogram")
    histogram: Histogram = Field(description="the command's merged histogram (µs)")


class TargetFigures(Model):
    """One server of a run that loads several at once: its clients' figures merged over the
    repetition's common window (never with another server's)."""

    driver: str = Field(description="the driver that loaded it (builtin or http)")
    clients: list[str] = Field(description="the client hosts that loaded it")
    count: Count = Field(description="non-error replies counted, its clients and commands")
    requests: Count = Field(description="requests finished, its clients")
    ops_per_sec: NonNegativeFloat = Field(description="count / window seconds, replies/s")
    latency_usec: Latency = Field(description="from the merged histogram of its clients")
    errors: Errors = Field(description="errors by type, summed over its clients")
    error_rate: NonNegativeFloat = Field(description="errors / requests, 0..1")
    overflow: Count = Field(description="latencies beyond the histogram's range")
    histogram: Histogram = Field(description="merged histogram of its clients (µs)")
    commands: dict[str, CommandRecord] = Field(
        description="per command type or request template, merged over its clients")


def hgrm_name(repetition_index: int) -> str:
    """The file holding repetition ``repetition_index``'s percentile distribution."""
    return f"rep-{repetition_index}.hgrm"


class Repetition(Model):
    """One finished repetition: figures merged over all agents within the common window."""

    index: int = Field(ge=1, description="repetition number, from 1")
    started: UTCTime = Field(description="T0, the common start instant (UTC, ISO 8601)")
    start_skew_usec: NonNegativeFloat = Field(
        description="achieved start skew across agents, µs: latest start (plus that agent's "
        "own process spread) minus earliest, in the coordinator's clock; a load process "
        "starts when its first request is sent"
    )
    start_skew_uncertainty_usec: NonNegativeFloat | None = Field(
        default=None,
        description="the true skew is within start_skew_usec ± this, µs: the sum of the two "
        "largest clock offset uncertainties (null in documents from before it was recorded)",
    )
    first_request_spread_usec: NonNegativeFloat | None = Field(
        default=None,
        description="largest, over agents, of its last connection's first request minus its "
        "first, µs, in the agent's clock (null in documents from before it was recorded)",
    )
    window: Window = Field(description="the common measurement window")
    count: Count = Field(description="non-error replies counted, all agents and commands")
    requests: Count = Field(description="requests finished, all agents")
    ops_per_sec: NonNegativeFloat = Field(
        description="count / window seconds, replies/s (one-window driver: the sum over agents "
        "of their count / their own run)"
    )
    latency_usec: Latency = Field(description="from the merged histogram of every agent")
    errors: Errors = Field(description="errors by type, summed over agents")
    error_rate: NonNegativeFloat = Field(description="errors / requests, 0..1")
    overflow: Count = Field(description="latencies beyond the histogram's range")
    bytes_sent: Count = Field(description="bytes sent to the server(s)")
    bytes_received: Count = Field(description="bytes received from the server(s)")
    marks: list[Mark] = Field(description="flags on this repetition (see the marks table)")
    histogram: Histogram = Field(description="merged histogram of every agent and command")
    hgrm: str = Field(description="file name of its percentile distribution, beside this file")
    commands: dict[str, CommandRecord] = Field(description="per command type (GET, SET, ...)")
    agents: list[AgentRepetition] = Field(description="per agent")
    verdicts: list[Verdict] = Field(
        default_factory=list, description="whether its figures can be trusted, with the "
        "evidence (coordinator.core.verdicts); absent in documents older than the field")
    metrics: list[HostMetrics] = Field(
        default_factory=list,
        description="per host (clients and servers): system metrics per interval (schema 2; "
        "empty in documents of schema 1)",
    )

    shards: dict[str, CommandRecord] = Field(
        default_factory=dict, description="Redis Cluster: per primary (host:port), the replies "
        "it gave in the window, their rate and latencies, merged over agents (a redirected "
        "request counts at the node that answered it); absent for a single server")
    redirects: Errors = Field(
        default_factory=dict, description="Redis Cluster: MOVED and ASK replies followed in the "
        "window, by kind: each is one re-send, not a request of its own (the request counts "
        "once, its latency from its first send to its final reply); absent when none")
    targets: dict[str, TargetFigures] = Field(
        default_factory=dict, description="a run loading several servers (benchmark.targets): "
        "per server name, its clients' figures; the repetition's own figures (count, "
        "latency_usec, errors, histogram, commands, ...) are then the first target's, and "
        "agents lists every client; absent for a run loading one server")

    @model_serializer(mode="wrap")
    def _without_absent_verdicts(self, write: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``verdicts`` is left out when there are none: such records read exactly as before
        the field existed (schema_version 1 gained it, optional); likewise a single server's
        empty ``shards`` and ``redirects``."""
        data: dict[str, Any] = write(self)
        for name in ("verdicts", "shards", "redirects", "targets"):
            if not data.get(name):
                data.pop(name, None)
        return data

    def with_verdicts(self, verdicts: Sequence[Verdict], marks: Sequence[str]) -> Repetition:
        """A copy judged: ``verdicts`` replace its verdicts, ``marks`` are added."""
        return Repetition.model_validate(
            {**dict(self), "verdicts": list(verdicts),
             "marks": list(dict.fromkeys([*self.marks, *marks]))})

    def with_marks(self, marks: Sequence[str]) -> Repetition:
        """A copy with ``marks`` added (each once, in order)."""
        return Repetition.model_validate(
            {**dict(self), "marks": list(dict.fromkeys([*self.marks, *marks]))}
        )

    def with_metrics(self, metrics: Sequence[HostMetrics]) -> Repetition:
        """A copy carrying the hosts' system metrics."""
        return Repetition.model_validate({**dict(self), "metrics": list(metrics)})


class SummaryRecord(Model):
    """The run's figures: each repetition's figure, summarised across repetitions."""

    repetitions: int = Field(ge=1, description="repetitions summarised")
    ops_per_sec: SpreadRecord = Field(description="throughput, replies/s")
    latency_usec: LatencySummary = Field(description="latency figures, µs")
    error_rate: SpreadRecord = Field(description="errors / requests, 0..1")

    @classmethod
    def of(cls, repetitions: Sequence[Repetition]) -> SummaryRecord:
        """Median, min, max and CV of each figure over ``repetitions`` (``ValueError`` if
        none). Each repetition's percentile comes from its own merged histogram; the summary
        is the median of those figures (the methodology's "median across repetitions")."""
        if not repetitions:
            raise ValueError("no repetitions to aggregate")
        return cls(
            repetitions=len(repetitions),
            ops_per_sec=SpreadRecord.of([r.ops_per_sec for r in repetitions]),
            latency_usec=LatencySummary.of([r.latency_usec for r in repetitions]),
            error_rate=SpreadRecord.of([r.error_rate for r in repetitions]),
        )
