"""The results of a run: the versioned ``results.json`` document, written as the run goes.

One directory per run::

    results/<date>-<time>-<inventory name>/
        results.json        this module's document (``schema_version`` 1), rewritten atomically
                            after every repetition
        rep-<n>.hgrm        the merged percentile distribution of repetition n (ms)

The models below are the document's schema and the source of its documentation: every field
carries its meaning and unit, ``docs/results.md``'s field reference is generated from them
(``python -m coordinator.results.model --docs docs/results.md``) and ``python -m coordinator.results.model
--schema`` prints the JSON Schema for third parties. Models refuse unknown fields.

Reading goes through ``READERS``, one reader per ``schema_version`` (pyperf's habit): a reader
turns a document of its version into the current model, so old files stay readable; an
unknown version is refused with one line. Old-format documents are kept as test fixtures
(``tests/fixtures/results-v<N>.json``).

Writing (``ResultsWriter.write``) goes to a temporary file in the same directory, fsynced, then
``os.replace``d over ``results.json`` (and the directory fsynced): a crash or Ctrl-C at any
instant leaves either the previous document or the new one, never a torn file, so a run loses
at most the repetition in progress.

A typical run::

    writer = ResultsWriter(default_directory(inventory.name), overwrite=False)
    document = new_document(inventory, [agent_record(...) for each agent])
    writer.write(document)
    for index in 1..N:
        figures = repetition_figures(reports, common_window(reports))
        done.append(figures)
        repetition = build_repetition(index, figures, started=..., start_skew_ns=...)
        document = document.with_repetition(repetition, aggregate(done))
        writer.write(document)
        writer.write_hgrm(index, figures.histogram)
    writer.write(document.finish("complete"))
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from hdrh.histogram import HdrHistogram
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from agent.histograms import HistogramParams
from coordinator import __version__
from coordinator.core.clock import ClockEstimate
from coordinator.core.errors import CoordError
from coordinator.inventory.schema import Inventory, Server
from coordinator.core.stats import (
    HISTOGRAM_PARAMS,
    AgentFigures,
    CommandFigures,
    IntervalFigures,
    LatencyFigures,
    Phase,
    RepetitionFigures,
    Spread,
    Summary,
    encode_histogram,
    first_problem,
    percentile_distribution,
)

SCHEMA_VERSION: Final = 1
"""The version this coord writes."""
RESULTS_FILE = "results.json"
REDACTED = "***"
SECRET_KEYS = ("password", "secret", "token")
"""An inventory key containing one of these words has its value replaced by ``REDACTED``."""
HISTOGRAM_ENCODING: Final = "hdrhistogram-v2-compressed-base64"

MARKS: Mapping[str, str] = {
    "fewer-than-3-repetitions": "run: fewer than 3 repetitions were asked for (explicit "
    "override of the methodology's minimum)",
    "load-on-server-host": "run: a client role runs on a host that also runs a target server",
    "hosts-share-a-machine": "run: hosts with the same address (one machine) were allowed by "
    "hosts[].shares_machine; load from them is not load from separate machines",
    "interrupted": "run: stopped by Ctrl-C or a signal; the finished repetitions are kept",
    "error-rate-above-threshold": "repetition: error_rate above benchmark.error_threshold",
    "no-common-window": "repetition: no interval in which every agent measured completely; "
    "its figures are zero",
    "forced-over-run-lock": "run: --force ran it while another run held a host's run lock "
    "(forced_over says who); the two runs may have measured each other's load",
}
"""Marks coord sets so far, with their meaning (verdicts may add more; see docs/results.md)."""


class ResultsError(CoordError):
    """A results directory or document cannot be written or read (one line, names the path)."""


# --------------------------------------------------------------------------------------------
# The document, schema_version 1


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


class HistogramSettings(Model):
    """How every histogram in the document was recorded."""

    unit: Literal["us"] = Field("us", description="unit of every recorded value: microseconds")
    lowest_usec: int = Field(description="lowest discernible value, µs")
    highest_usec: int = Field(
        description="highest trackable value, µs (HdrHistogram rounds the range up to a whole "
        "bucket: slightly larger values are still held; beyond that they count as overflow)"
    )
    significant_figures: int = Field(description="decimal digits of value precision")
    encoding: Literal["hdrhistogram-v2-compressed-base64"] = Field(
        HISTOGRAM_ENCODING, description="how histogram fields are serialized"
    )


class RanWithRecord(Model):
    """What a client's load actually ran with, as its driver reported it at prepare."""

    driver: str = Field(description="the load driver (benchmark.driver)")
    driver_version: str = Field(description="the driver's version (and its libraries')")
    processes: NonNegativeInt = Field(description="load processes on the host")
    connections: NonNegativeInt = Field(description="connections, over all load processes")
    pipeline: PositiveInt | None = Field(
        description="requests in flight per connection; null: the driver does not pipeline"
    )
    interpreter: str = Field(description="what ran the load processes (Python version, path)")


class AgentRecord(Model):
    """One agent of the run, as it was when the run started."""

    host: str = Field(description="host name, as in the inventory")
    offset_ns: int = Field(
        description="clock offset, ns: agent clock = coordinator clock + offset_ns"
    )
    uncertainty_ns: NonNegativeInt = Field(
        description="bound on the offset's error, ns (half the round trip used)"
    )
    rtt_ns: NonNegativeInt = Field(description="round trip of the sample kept, ns")
    python: str = Field(description="the agent's Python version")
    agent_version: str = Field(description="the agent's coord version")
    bundle_hash: str | None = Field(description="content hash of the agent bundle it runs")
    ran_with: RanWithRecord | None = Field(
        None, description="client hosts: what the load ran with, from the first repetition's "
        "prepare; absent for servers, before any load, and in documents older than the field"
    )

    @model_serializer(mode="wrap")
    def _without_absent_ran_with(self, write: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``ran_with`` is left out when unknown: such records read exactly as before the field
        existed (schema_version 1 gained it, optional)."""
        data: dict[str, Any] = write(self)
        if data.get("ran_with") is None:
            data.pop("ran_with", None)
        return data


class ForcedOverRecord(Model):
    """A host whose run lock another run held when ``coord run --force`` went on anyway."""

    host: str = Field(description="host name, as in the inventory")
    held_by: str = Field(
        description="who held it, as the host's agent saw it: the other run's operator "
        "(user@machine), coordinator pid and start, or the process the kernel names"
    )


class TargetRecord(Model):
    """The server the load went to, as the clients were told to reach it."""

    server: str = Field(description="server name, as in the inventory")
    address: str = Field(
        description="the data address the load connected to (servers[].address, else the "
        "SSH address of the server's host)"
    )
    port: int = Field(description="TCP port the load connected to")
    source_addresses: dict[str, str] = Field(
        description="client host -> the local address its load left from (only clients with "
        "hosts[].load_source_address)"
    )


class Latency(Model):
    """Latency figures of one merged histogram, µs; 0 for an empty histogram."""

    p50: NonNegativeInt = Field(description="median, µs")
    p90: NonNegativeInt = Field(description="90th percentile, µs")
    p95: NonNegativeInt = Field(description="95th percentile, µs")
    p99: NonNegativeInt = Field(description="99th percentile, µs")
    p999: NonNegativeInt = Field(description="99.9th percentile, µs")
    max: NonNegativeInt = Field(
        description="largest value recorded, µs (top of its bucket; overflowed values excluded)"
    )
    mean: NonNegativeFloat = Field(description="mean, µs")


class Window(Model):
    """The common measurement window: intervals every agent measured completely."""

    first: NonNegativeInt | None = Field(description="first interval index (null: empty)")
    last: NonNegativeInt | None = Field(description="last interval index (null: empty)")
    intervals: NonNegativeInt = Field(description="number of intervals in the window")
    seconds: NonNegativeFloat = Field(description="intervals × interval length, s")
    excluded: list[NonNegativeInt] = Field(
        description="indices between first and last left out (some agent's interval was "
        "missing, incomplete or not in its measure phase)"
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
    ops_per_sec: NonNegativeFloat = Field(description="count / interval length, replies/s")
    p99_usec: NonNegativeInt = Field(description="99th percentile of this interval, µs")
    histogram: Histogram = Field(description="this interval's histogram, commands merged (µs)")


class AgentRepetition(Model):
    """One agent's part of a repetition."""

    host: str = Field(description="host name")
    count: Count = Field(description="non-error replies counted in the window")
    requests: Count = Field(description="requests finished in the window")
    errors: Errors = Field(description="errors by type in the window")
    error_rate: NonNegativeFloat = Field(description="errors / requests in the window, 0..1")
    overflow: Count = Field(description="latencies beyond the histogram's range, in the window")
    ops_per_sec: NonNegativeFloat = Field(description="count / window seconds, replies/s")
    latency_usec: Latency = Field(description="from this agent's merged window histogram")
    histogram: Histogram = Field(description="this agent's window histogram (µs)")
    intervals: list[IntervalRecord] = Field(
        description="every interval the agent reported, warm-up included"
    )


class CommandRecord(Model):
    """One command type merged over all agents in the window."""

    count: Count = Field(description="non-error replies counted")
    ops_per_sec: NonNegativeFloat = Field(description="count / window seconds, replies/s")
    latency_usec: Latency = Field(description="from the command's merged histogram")
    histogram: Histogram = Field(description="the command's merged histogram (µs)")


class Repetition(Model):
    """One finished repetition: figures merged over all agents within the common window."""

    index: int = Field(ge=1, description="repetition number, from 1")
    started: UTCTime = Field(description="T0, the common start instant (UTC, ISO 8601)")
    start_skew_usec: NonNegativeFloat = Field(
        description="achieved start skew across agents, µs: latest start (plus that agent's "
        "own process spread) minus earliest, in the coordinator's clock"
    )
    window: Window = Field(description="the common measurement window")
    count: Count = Field(description="non-error replies counted, all agents and commands")
    requests: Count = Field(description="requests finished, all agents")
    ops_per_sec: NonNegativeFloat = Field(description="count / window seconds, replies/s")
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


class SpreadRecord(Model):
    """One figure across repetitions."""

    median: float = Field(description="median over repetitions (mean of the middle two if even)")
    min: float = Field(description="smallest value")
    max: float = Field(description="largest value")
    cv: NonNegativeFloat | None = Field(
        description="coefficient of variation: sample stdev / mean (null: one repetition or "
        "zero mean)"
    )


class LatencySummary(Model):
    """Each latency figure across repetitions, µs."""

    p50: SpreadRecord = Field(description="median latency, µs")
    p90: SpreadRecord = Field(description="90th percentile, µs")
    p95: SpreadRecord = Field(description="95th percentile, µs")
    p99: SpreadRecord = Field(description="99th percentile, µs")
    p999: SpreadRecord = Field(description="99.9th percentile, µs")
    max: SpreadRecord = Field(description="maximum, µs")
    mean: SpreadRecord = Field(description="mean, µs")


class SummaryRecord(Model):
    """The run's figures: each repetition's figure, summarised across repetitions."""

    repetitions: int = Field(ge=1, description="repetitions summarised")
    ops_per_sec: SpreadRecord = Field(description="throughput, replies/s")
    latency_usec: LatencySummary = Field(description="latency figures, µs")
    error_rate: SpreadRecord = Field(description="errors / requests, 0..1")


class FailureRecord(Model):
    """Why a run failed, as coord reported it."""

    reason: str = Field(
        min_length=1, description="the error coord printed (one line per problem, joined by \"; \")"
    )
    hosts: list[str] = Field(description="the hosts the error names (empty when none)")


class ResultsDocument(Model):
    """``results.json``: everything a run measured, readable while the run is going."""

    schema_version: Literal[1] = Field(description="version of this document's shape")
    coord_version: str = Field(description="version of coord that wrote it")
    created: UTCTime = Field(description="when the run started (UTC, ISO 8601)")
    finished: UTCTime | None = Field(description="when the run ended (null while running)")
    status: Literal["running", "complete", "interrupted", "failed"] = Field(
        description="running until the run ends"
    )
    marks: list[Mark] = Field(description="flags on the whole run (see the marks table)")
    inventory: dict[str, JsonValue] = Field(
        description="the inventory as run (overrides applied), passwords replaced by \"***\""
    )
    histograms: HistogramSettings = Field(description="units and precision of every histogram")
    agents: list[AgentRecord] = Field(description="per agent: clock and software")
    target: TargetRecord | None = Field(
        None, description="where the load went (null in documents of coord before it was kept)"
    )
    repetitions: list[Repetition] = Field(description="finished repetitions, in order")
    summary: SummaryRecord | None = Field(
        description="across repetitions (null until a repetition has finished)"
    )
    forced_over: list[ForcedOverRecord] = Field(
        default_factory=list,
        description="hosts another run held when --force ran this one anyway (then marked "
        "forced-over-run-lock); empty otherwise",
    )
    failure: FailureRecord | None = Field(
        default=None, description="why the run failed; written only when status is failed"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ResultsDocument:
        leaked = _unredacted(self.inventory, "inventory")
        if leaked:
            raise ValueError(f"{leaked} is not redacted")
        indices = [repetition.index for repetition in self.repetitions]
        if indices != sorted(set(indices)):
            raise ValueError(f"repetition indices must increase, got {indices}")
        if self.summary is not None and not self.repetitions:
            raise ValueError("a summary needs at least one repetition")
        if (self.failure is not None) != (self.status == "failed"):
            raise ValueError("a failure reason goes with status failed, and only with it")
        return self

    @model_serializer(mode="wrap")
    def _without_absent_failure(self, write: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``failure`` is left out unless the run failed: documents of runs that did not fail
        read exactly as before the field existed (schema_version 1 gained it, optional)."""
        data: dict[str, Any] = write(self)
        if data.get("failure") is None:
            data.pop("failure", None)
        return data

    def with_repetition(
        self, repetition: Repetition, summary: Summary | SummaryRecord | None
    ) -> ResultsDocument:
        """A copy with ``repetition`` appended and the summary replaced."""
        if isinstance(summary, Summary):
            summary = build_summary(summary)
        return ResultsDocument.model_validate(
            {**dict(self), "repetitions": [*self.repetitions, repetition], "summary": summary}
        )

    def with_ran_with(self, ran_with: Mapping[str, RanWithRecord]) -> ResultsDocument:
        """A copy whose agents named in ``ran_with`` record what their load ran with."""
        agents = [agent.model_copy(update={"ran_with": ran_with[agent.host]})
                  if agent.host in ran_with else agent for agent in self.agents]
        return ResultsDocument.model_validate({**dict(self), "agents": agents})

    def finish(
        self,
        status: Literal["complete", "interrupted", "failed"],
        *,
        marks: Sequence[str] = (),
        finished: datetime | None = None,
        failure: FailureRecord | None = None,
    ) -> ResultsDocument:
        """A copy marked as ended now (or at ``finished``), with ``marks`` added; a failed run
        says why (``failure``)."""
        return ResultsDocument.model_validate(
            {
                **dict(self),
                "status": status,
                "failure": failure,
                "finished": finished or datetime.now(timezone.utc),
                "marks": list(dict.fromkeys([*self.marks, *marks])),
            }
        )


# --------------------------------------------------------------------------------------------
# Builders


def redact(value: JsonValue) -> JsonValue:
    """``value`` with every non-null secret (a key naming a password, secret or token) hidden."""
    if isinstance(value, dict):
        return {
            key: REDACTED if _is_secret(key) and item is not None else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _is_secret(key: str) -> bool:
    return any(word in key.lower() for word in SECRET_KEYS)


def _unredacted(value: JsonValue, path: str) -> str | None:
    if isinstance(value, dict):
        for key, item in value.items():
            if _is_secret(key) and item is not None and item != REDACTED:
                return f"{path}.{key}"
            found = _unredacted(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for position, item in enumerate(value):
            found = _unredacted(item, f"{path}.{position}")
            if found:
                return found
    return None


def inventory_snapshot(inventory: Inventory) -> dict[str, JsonValue]:
    """The inventory as a JSON object, secrets redacted."""
    snapshot = redact(inventory.model_dump(mode="json"))
    if not isinstance(snapshot, dict):  # pragma: no cover - a model dumps to an object
        raise TypeError("an inventory dumps to a JSON object")
    return snapshot


def agent_record(
    host: str, clock: ClockEstimate, *, python: str, agent_version: str, bundle_hash: str | None
) -> AgentRecord:
    return AgentRecord(
        host=host,
        offset_ns=clock.offset_ns,
        uncertainty_ns=clock.uncertainty_ns,
        rtt_ns=clock.rtt_ns,
        python=python,
        agent_version=agent_version,
        bundle_hash=bundle_hash,
    )


def new_document(
    inventory: Inventory,
    agents: Sequence[AgentRecord],
    *,
    marks: Sequence[str] = (),
    params: HistogramParams = HISTOGRAM_PARAMS,
    created: datetime | None = None,
    forced_over: Sequence[ForcedOverRecord] = (),
    target: TargetRecord | None = None,
) -> ResultsDocument:
    """The document of a run that has just started: no repetition yet, status running."""
    return ResultsDocument(
        schema_version=SCHEMA_VERSION,
        coord_version=__version__,
        created=created or datetime.now(timezone.utc),
        finished=None,
        status="running",
        marks=list(dict.fromkeys(marks)),
        inventory=inventory_snapshot(inventory),
        histograms=HistogramSettings(
            lowest_usec=params.lowest_usec,
            highest_usec=params.highest_usec,
            significant_figures=params.significant_figures,
        ),
        agents=list(agents),
        target=target,
        repetitions=[],
        summary=None,
        forced_over=list(forced_over),
    )


def target_record(inventory: Inventory, server: Server) -> TargetRecord:
    """Where the load of a run of ``inventory`` goes, and where it leaves from."""
    return TargetRecord(
        server=server.name,
        address=inventory.data_address(server),
        port=server.port,
        source_addresses={
            host.name: host.load_source_address
            for host in inventory.clients
            if host.load_source_address is not None
        },
    )


def hgrm_name(repetition_index: int) -> str:
    return f"rep-{repetition_index}.hgrm"


def build_latency(figures: LatencyFigures) -> Latency:
    return Latency(
        p50=figures.p50,
        p90=figures.p90,
        p95=figures.p95,
        p99=figures.p99,
        p999=figures.p999,
        max=figures.max,
        mean=figures.mean,
    )


def build_window(window: Sequence[int], interval_s: float) -> Window:
    indices = sorted(window)
    if not indices:
        return Window(first=None, last=None, intervals=0, seconds=0.0, excluded=[])
    kept = set(indices)
    return Window(
        first=indices[0],
        last=indices[-1],
        intervals=len(indices),
        seconds=len(indices) * interval_s,
        excluded=[i for i in range(indices[0], indices[-1] + 1) if i not in kept],
    )


def build_repetition(
    index: int,
    figures: RepetitionFigures,
    *,
    started: datetime,
    start_skew_ns: int,
    marks: Sequence[str] = (),
) -> Repetition:
    """The document's form of one repetition's figures (histograms encoded)."""
    return Repetition(
        index=index,
        started=started.astimezone(timezone.utc),
        start_skew_usec=start_skew_ns / 1000,
        window=build_window(figures.window, figures.interval_s),
        count=figures.count,
        requests=figures.requests,
        ops_per_sec=figures.ops_per_sec,
        latency_usec=build_latency(figures.latency_usec),
        errors=dict(figures.errors),
        error_rate=figures.error_rate,
        overflow=figures.overflow,
        bytes_sent=figures.bytes_sent,
        bytes_received=figures.bytes_received,
        marks=list(dict.fromkeys(marks)),
        histogram=encode_histogram(figures.histogram),
        hgrm=hgrm_name(index),
        commands={name: _command(command) for name, command in figures.commands.items()},
        agents=[_agent(agent) for agent in figures.agents],
    )


def _command(figures: CommandFigures) -> CommandRecord:
    return CommandRecord(
        count=figures.count,
        ops_per_sec=figures.ops_per_sec,
        latency_usec=build_latency(figures.latency_usec),
        histogram=encode_histogram(figures.histogram),
    )


def _agent(figures: AgentFigures) -> AgentRepetition:
    return AgentRepetition(
        host=figures.host,
        count=figures.count,
        requests=figures.requests,
        errors=dict(figures.errors),
        error_rate=figures.error_rate,
        overflow=figures.overflow,
        ops_per_sec=figures.ops_per_sec,
        latency_usec=build_latency(figures.latency_usec),
        histogram=encode_histogram(figures.histogram),
        intervals=[_interval(interval) for interval in figures.intervals],
    )


def _interval(figures: IntervalFigures) -> IntervalRecord:
    return IntervalRecord(
        index=figures.index,
        phase=figures.phase,
        complete=figures.complete,
        in_window=figures.in_window,
        count=figures.count,
        requests=figures.requests,
        errors=dict(figures.errors),
        overflow=figures.overflow,
        ops_per_sec=figures.ops_per_sec,
        p99_usec=figures.p99_usec,
        histogram=figures.histogram,
    )


def _spread(spread: Spread) -> SpreadRecord:
    return SpreadRecord(median=spread.median, min=spread.min, max=spread.max, cv=spread.cv)


def build_summary(summary: Summary) -> SummaryRecord:
    latency = summary.latency_usec
    return SummaryRecord(
        repetitions=summary.repetitions,
        ops_per_sec=_spread(summary.ops_per_sec),
        latency_usec=LatencySummary(
            p50=_spread(latency.p50),
            p90=_spread(latency.p90),
            p95=_spread(latency.p95),
            p99=_spread(latency.p99),
            p999=_spread(latency.p999),
            max=_spread(latency.max),
            mean=_spread(latency.mean),
        ),
        error_rate=_spread(summary.error_rate),
    )


# --------------------------------------------------------------------------------------------
# Writing


def default_directory(inventory_name: str, now: datetime | None = None) -> Path:
    """``results/<date>-<time>-<inventory name>`` (local time), relative to the cwd."""
    moment = now or datetime.now().astimezone()
    return Path("results") / f"{moment:%Y%m%d-%H%M%S}-{inventory_name}"


class ResultsWriter:
    """Writes one run's directory: ``results.json`` (atomically) and ``rep-<n>.hgrm`` files.

    The directory is created if needed. An existing non-empty directory is refused, unless
    ``overwrite``: then the files this writer owns (``results.json``, ``rep-*.hgrm``, left-over
    temporary files) are removed and anything else is left alone.
    """

    def __init__(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        self.directory = Path(directory)
        try:
            if self.directory.exists() and not self.directory.is_dir():
                raise ResultsError(f"{self.directory}: exists and is not a directory")
            if self.directory.is_dir() and any(self.directory.iterdir()):
                if not overwrite:
                    raise ResultsError(
                        f"{self.directory}: directory is not empty (choose another --out, or "
                        "pass --overwrite)"
                    )
                for path in self._owned_files():
                    path.unlink()
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(f"{self.directory}: {exc.strerror or exc}") from exc

    @property
    def results_path(self) -> Path:
        return self.directory / RESULTS_FILE

    def hgrm_path(self, repetition_index: int) -> Path:
        return self.directory / hgrm_name(repetition_index)

    def write(self, document: ResultsDocument) -> Path:
        """Replace ``results.json`` with ``document``, atomically and durably."""
        text = document.model_dump_json(indent=2) + "\n"
        _atomic_write(self.results_path, text.encode("utf-8"))
        return self.results_path

    def write_hgrm(self, repetition_index: int, histogram: HdrHistogram) -> Path:
        """Write ``rep-<n>.hgrm``: the histogram's percentile distribution, values in ms."""
        path = self.hgrm_path(repetition_index)
        _atomic_write(path, percentile_distribution(histogram).encode("ascii"))
        return path

    def _owned_files(self) -> list[Path]:
        owned = [
            self.results_path,
            *self.directory.glob("rep-*.hgrm"),
            *self.directory.glob(f".{RESULTS_FILE}.*.tmp"),
            *self.directory.glob(".rep-*.hgrm.*.tmp"),
        ]
        return [path for path in owned if path.is_file()]


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a same-directory temporary file, fsync and replace.

    The temporary file is removed on any failure, Ctrl-C included; ``path`` then still holds
    its previous content. ``ResultsError`` for an OS error.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(exc, OSError):
            raise ResultsError(f"{path}: cannot write: {exc.strerror or exc}") from exc
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# --------------------------------------------------------------------------------------------
# Reading


def _read_v1(text: str) -> ResultsDocument:
    return ResultsDocument.model_validate_json(text)


READERS: Mapping[int, Callable[[str], ResultsDocument]] = {1: _read_v1}
"""schema_version -> reader turning a document of that version into the current model."""


def load_results(path: str | os.PathLike[str]) -> ResultsDocument:
    """Read ``results.json`` (or the one inside a results directory), any supported version.

    ``ResultsError`` (one line naming the file) if it cannot be read, is not JSON, carries no
    or an unsupported ``schema_version``, or does not match its version's schema.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ResultsError(f"{path}: cannot read: {reason or exc}") from exc
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ResultsError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ResultsError(f"{path}: not a coord results document (no schema_version)")
    version = data["schema_version"]
    known = type(version) is int  # not bool, float or text
    reader = READERS.get(version) if known else None
    if reader is None:
        supported = ", ".join(str(v) for v in sorted(READERS))
        newer = " (written by a newer coord)" if known and version > max(READERS) else ""
        raise ResultsError(
            f"{path}: schema_version {version!r} is not supported{newer}; coord {__version__} "
            f"reads {supported}"
        )
    try:
        return reader(text)
    except ValidationError as exc:
        raise ResultsError(
            f"{path}: not a valid results document (schema_version {version}): "
            f"{first_problem(exc)}"
        ) from exc


# --------------------------------------------------------------------------------------------
# Schema and documentation


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the document this coord writes."""
    schema = ResultsDocument.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"coord {__version__} results.json, schema_version {SCHEMA_VERSION}",
        **schema,
    }


DOCS_BEGIN = "<!-- fields:begin (generated by python -m coordinator.results.model --docs) -->"
DOCS_END = "<!-- fields:end -->"


def model_paths() -> dict[type[BaseModel], list[str]]:
    """Each model of the document and the paths where it appears, in document order."""
    found: dict[type[BaseModel], list[str]] = {ResultsDocument: ["(top level)"]}
    _collect(ResultsDocument, "", found)
    return found


def _collect(
    model: type[BaseModel], prefix: str, found: dict[type[BaseModel], list[str]]
) -> None:
    for name, info in model.model_fields.items():
        nested, suffix = _nested_model(info.annotation)
        if nested is not None:
            path = f"{prefix}{name}{suffix}"
            found.setdefault(nested, []).append(path)
            _collect(nested, f"{path}.", found)


def field_paths() -> list[str]:
    """Every field path of the document (``repetitions[].agents[].host``...), depth first."""
    paths: list[str] = []
    for model, places in model_paths().items():
        for place in places:
            prefix = "" if model is ResultsDocument else f"{place}."
            paths += [f"{prefix}{name}" for name in model.model_fields]
    return paths


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for argument in arguments:
            found = _nested_model(argument)
            if found[0] is not None:
                return found
        return None, ""
    if origin is typing.Annotated:
        return _nested_model(arguments[0])
    if origin is list:
        model, suffix = _nested_model(arguments[0])
        return model, f"[]{suffix}"
    if origin is dict:
        model, suffix = _nested_model(arguments[1])
        return model, f".<name>{suffix}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    return None, ""


def _type_name(name: str, annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if name == "histogram":
        return "histogram (base64)"
    if origin is typing.Literal:
        return " \\| ".join(f"`{json.dumps(argument)}`" for argument in arguments)
    if origin in (typing.Union, types.UnionType):
        kinds = [_type_name(name, a) for a in arguments if a is not type(None)]
        return " \\| ".join(kinds) + (" or null" if type(None) in arguments else "")
    if origin is typing.Annotated:
        return _type_name(name, arguments[0])
    if origin is list:
        return f"list of {_type_name(name, arguments[0])}"
    if origin is dict:
        return f"map string → {_type_name(name, arguments[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if annotation is AwareDatetime or annotation is datetime:
        return "UTC time (ISO 8601)"
    if annotation is JsonValue:
        return "JSON"
    scalars: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return scalars.get(annotation, str(annotation))


def render_reference() -> str:
    """docs/results.md's field reference: one table per model, then the marks."""
    blocks = []
    for model, places in model_paths().items():
        where = ", ".join(f"`{place}`" if place != "(top level)" else place for place in places)
        doc = (model.__doc__ or "").strip().splitlines()[0]
        rows = ["| field | type | meaning |", "| --- | --- | --- |"]
        rows += [
            f"| `{name}` | {_type_name(name, info.annotation)} | {info.description or ''} |"
            for name, info in model.model_fields.items()
        ]
        blocks.append(f"### {model.__name__}\n\n{doc} At: {where}.\n\n" + "\n".join(rows))
    marks = ["| mark | meaning |", "| --- | --- |"]
    marks += [f"| `{mark}` | {meaning} |" for mark, meaning in MARKS.items()]
    blocks.append("### Marks\n\nMarks coord sets so far:\n\n" + "\n".join(marks))
    return "\n\n".join(blocks)


def update_document(text: str) -> str:
    """``text`` with the generated block between the markers replaced by a fresh rendering."""
    head, found, rest = text.partition(DOCS_BEGIN)
    if not found:
        raise ValueError(f"no {DOCS_BEGIN!r} marker")
    _, _, tail = rest.partition(DOCS_END)
    return f"{head}{DOCS_BEGIN}\n\n{render_reference()}\n\n{DOCS_END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coordinator.results.model", description="coord results.json: schema and docs"
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--schema", action="store_true", help="print the JSON Schema")
    action.add_argument("--docs", metavar="FILE", help="regenerate FILE's field reference")
    arguments = parser.parse_args(argv)
    if arguments.schema:
        sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
        return 0
    path = Path(arguments.docs)
    path.write_text(update_document(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
