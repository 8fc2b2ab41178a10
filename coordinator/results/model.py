"""The results of a run: the versioned ``results.json`` document's models. Pure: no I/O.

One directory per run::

    results/<date>-<time>-<inventory name>/
        results.json        this document (``schema_version`` 2), rewritten atomically after
                            every repetition (``coordinator.results.io``)
        rep-<n>.hgrm        the merged percentile distribution of repetition n (ms)
        rep-<n>.hlog, summary.csv, report.html
                            derived from this document when the run ends
                            (``coordinator.report``; ``coord report DIR`` rewrites them)

The models are the document's schema and the source of its documentation: every field carries
its meaning and unit; ``docs/results.md``'s field reference and the JSON Schema are generated
from them (``coordinator.results.docs``). Models refuse unknown fields. The figures of a
repetition and of the summary are the records the statistics produce
(``coordinator.core.figures``), stored as they are.

A typical run::

    writer = ResultsWriter(default_directory(inventory.name), overwrite=False)
    document = new_document(inventory, [agent_record(...) for each agent])
    writer.write(document)
    for index in 1..N:
        repetition = repetition_figures(reports, common_window(reports), index=index, ...)
        repetition = repetition.with_marks(marks)
        document = document.with_repetition(repetition, aggregate([*done, repetition]))
        writer.write(document)
        writer.write_hgrm(index, decode_histogram(repetition.histogram))
    writer.write(document.finish("complete"))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Final, Literal

from pydantic import (
    Field,
    JsonValue,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from agent.histograms import HistogramParams
from coordinator import __version__
from coordinator.core.baselines import Baselines
from coordinator.core.clock import ClockEstimate
from coordinator.core.figures import (
    AgentRepetition,
    CommandRecord,
    IntervalRecord,
    Latency,
    LatencySummary,
    Mark,
    Model,
    Repetition,
    SpreadRecord,
    SummaryRecord,
    TargetFigures,
    UTCTime,
    Window,
    hgrm_name,
)
from coordinator.core.histograms import HISTOGRAM_PARAMS
from coordinator.core.marks import MARK_MEANINGS as MARKS
from coordinator.core.marks import MARKS as MARK_KINDS
from coordinator.core.platform import PlatformRecord
from coordinator.core.verdict_records import Evidence, Verdict
from coordinator.inventory.schema import Inventory, Server

__all__ = [
    "MARKS",
    "SCHEMA_VERSION",
    "AgentRecord",
    "AgentRepetition",
    "CommandRecord",
    "Evidence",
    "FailureRecord",
    "ForcedOverRecord",
    "HistogramSettings",
    "IntervalRecord",
    "Latency",
    "LatencySummary",
    "PlatformRecord",
    "RanWithRecord",
    "Repetition",
    "ResultsDocument",
    "SpreadRecord",
    "SummaryRecord",
    "TargetFigures",
    "TargetRecord",
    "Verdict",
    "Window",
    "agent_record",
    "hgrm_name",
    "inventory_snapshot",
    "new_document",
    "redact",
    "redact_command_line",
    "target_record",
]

SCHEMA_VERSION: Final = 2
"""The version this coord writes (2: repetitions carry per-host system metrics)."""
REDACTED = "***"
SECRET_KEYS = ("password", "secret", "token")
"""An inventory key containing one of these words has its value replaced by ``REDACTED``."""
HISTOGRAM_ENCODING: Final = "hdrhistogram-v2-compressed-base64"



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
    preload_seconds: NonNegativeFloat | None = Field(
        None, description="the keyspace preload's wall time on this client before the first "
        "repetition, s (its slowest load process); null: it preloaded nothing, or a document "
        "older than the field")


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


class FailureRecord(Model):
    """Why a run failed, as coord reported it."""

    reason: str = Field(
        min_length=1, description="the error coord printed (one line per problem, joined by \"; \")"
    )
    hosts: list[str] = Field(description="the hosts the error names (empty when none)")


class ResultsDocument(Model):
    """``results.json``: everything a run measured, readable while the run is going."""

    schema_version: Literal[2] = Field(description="version of this document's shape")
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
    verdicts: list[Verdict] = Field(
        default_factory=list,
        description="the run's verdicts: throughput across repetitions, then each repetition "
        "verdict summarised (its worst state, the repetitions in it); absent until a "
        "repetition is judged, and in documents older than the field",
    )
    platform: PlatformRecord | None = Field(
        default=None, description="where the run ran: every host and target server, as the "
        "agents described them once the hosts were locked (absent before that, and in "
        "documents of coord before the field)"
    )
    baselines: Baselines | None = Field(
        default=None, description="the netperf baselines before the first repetition and "
        "after the last, per pair (absent in documents of coord before they were taken)"
    )
    command_line: list[str] | None = Field(
        default=None, description="the command coord was run with, one argument each, the "
        "value of any PATH=VALUE or --option=VALUE naming a password, secret or token "
        "replaced by \"***\" (absent when not run from the command line, and in documents "
        "of coord before the field)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ResultsDocument:
        leaked = _unredacted(self.inventory, "inventory")
        if leaked:
            raise ValueError(f"{leaked} is not redacted")
        if self.command_line is not None and \
                redact_command_line(self.command_line) != self.command_line:
            raise ValueError("command_line holds a secret that is not redacted")
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
        for optional in ("failure", "platform", "baselines", "command_line"):
            if data.get(optional) is None:
                data.pop(optional, None)
        if not data.get("verdicts"):
            data.pop("verdicts", None)
        return data

    def with_baselines(self, baselines: Baselines, marks: Sequence[str] = ()) -> ResultsDocument:
        """A copy with the run's baselines replaced and ``marks`` added."""
        return ResultsDocument.model_validate(
            {**dict(self), "baselines": baselines,
             "marks": list(dict.fromkeys([*self.marks, *marks]))})

    def with_repetition(
        self, repetition: Repetition, summary: SummaryRecord | None
    ) -> ResultsDocument:
        """A copy with ``repetition`` appended and the summary replaced."""
        return ResultsDocument.model_validate(
            {**dict(self), "repetitions": [*self.repetitions, repetition], "summary": summary}
        )

    def with_verdicts(self, verdicts: Sequence[Verdict]) -> ResultsDocument:
        """A copy with the run's ``verdicts`` replaced, and its marks of run verdicts set to
        the flagged ones (a verdict across repetitions may clear as repetitions are added)."""
        run_verdicts = {name for name, kind in MARK_KINDS.items()
                        if kind.verdict and kind.scope == "run"}
        flagged = [v.name for v in verdicts if v.state == "flagged" and v.name in run_verdicts]
        kept = [mark for mark in self.marks if mark not in run_verdicts]
        return ResultsDocument.model_validate(
            {**dict(self), "verdicts": list(verdicts),
             "marks": list(dict.fromkeys([*kept, *flagged]))})

    def with_platform(self, platform: PlatformRecord) -> ResultsDocument:
        """A copy recording where the run ran."""
        return ResultsDocument.model_validate({**dict(self), "platform": platform})

    def with_ran_with(self, ran_with: Mapping[str, RanWithRecord]) -> ResultsDocument:
        """A copy whose agents named in ``ran_with`` record what their load ran with."""
        agents = [agent.model_copy(update={"ran_with": _kept_preload(agent.ran_with,
                                                                     ran_with[agent.host])})
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


def redact_command_line(arguments: Sequence[str]) -> list[str]:
    """``arguments`` with the value of every ``PATH=VALUE`` (``--set`` overrides, also written
    ``--set=PATH=VALUE``) and ``--option=VALUE`` whose name is a secret's replaced by
    ``***``; the redaction of the inventory, applied to what ``--set`` can carry."""
    redacted = []
    for argument in arguments:
        prefix, _, rest = argument.partition("=") if argument.startswith("--set=") else (
            "", "", argument)
        name, equals, _value = rest.partition("=")
        if equals and _is_secret(name):
            rest = f"{name}={REDACTED}"
        redacted.append(f"{prefix}={rest}" if prefix else rest)
    return redacted


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
    command_line: Sequence[str] | None = None,
) -> ResultsDocument:
    """The document of a run that has just started: no repetition yet, status running;
    ``command_line`` (what coord was run with) is kept with its secrets redacted."""
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
        command_line=None if command_line is None else redact_command_line(command_line),
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


def _kept_preload(before: RanWithRecord | None, now: RanWithRecord) -> RanWithRecord:
    """``now``, keeping the preload time recorded before (only the first repetition preloads,
    and every repetition records what it ran with)."""
    if now.preload_seconds is None and before is not None and before.preload_seconds is not None:
        return now.model_copy(update={"preload_seconds": before.preload_seconds})
    return now
