"""One benchmark run, as an explicit sequence of steps.

    deploy (cached) → for each repetition:
        prepare every client's driver → choose T0 → start every client at T0 (in its own
        clock) → warm-up → measure → collect → merge → persist at once
    → aggregate → write the final document; stop every agent, whatever happened.

Each repetition is written to ``results.json`` (atomic replace) as soon as it is collected, so
an interrupted run keeps every finished repetition. Everything statistical is in
:mod:`coordinator.core.stats`; the document's shape is :mod:`coordinator.results.model`.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from agent.drivers.base import Prepared
from agent.drivers.spec import Timeline
from agent.runlock import Holder, utc_text
from coordinator.core import stats
from coordinator.core.clock import to_agent_time
from coordinator.core.collector import collector_paused
from coordinator.core.errors import CoordError, FleetError, HostError, UsageError
from coordinator.inventory.loader import LoadedInventory
from coordinator.inventory.schema import Inventory
from coordinator.inventory.server_auth import target_password
from coordinator.remote.agent_link import LoadProgress
from coordinator.remote.deploy import DeployOptions
from coordinator.remote.fanout import ProgressView, StageReporter, fan_out
from coordinator.remote.fleet import AgentSession, Fleet
from coordinator.results import model as results
from coordinator.run.loadspec import load_spec, phases, target_of

START_MARGIN_S = 0.3
"""T0 lies this far in the future (plus the slowest agent's round trip) when it is sent."""
PROGRESS_PERIOD_S = 0.5
"""How often the live view asks every client for its progress."""
FINISH_GRACE_S = 15.0
"""Seconds past the planned end of a repetition before agents are presumed stuck."""


class RunInterrupted(CoordError):
    """Ctrl-C (or SIGTERM) during a run; the finished repetitions are kept."""

    exit_status = 130


class RunFailed(CoordError):
    """A repetition could not be completed (an agent was lost, a driver failed); ``hosts``
    are the hosts at fault."""

    def __init__(self, message: str, hosts: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.hosts = list(hosts)


class RunView(Protocol):
    """What a run reports while it goes (the CLI's live view implements it)."""

    def deploying(self) -> ProgressView: ...

    def repetition(self, index: int, total: int) -> None: ...

    def progress(self, elapsed_s: float, total_s: float,
                 clients: dict[str, LoadProgress]) -> None: ...

    def repetition_done(self, repetition: results.Repetition) -> None: ...


@dataclass(frozen=True)
class RunOutcome:
    """Where the results are and what they say."""

    directory: Path
    document: results.ResultsDocument


def run_benchmark(loaded: LoadedInventory, out: Path, view: RunView,
                  options: DeployOptions | None = None, *,
                  overwrite: bool = False, force: bool = False) -> RunOutcome:
    """Run the inventory's benchmark; results go to ``out`` as they happen. ``force`` runs
    even where another run holds a host's run lock (the results say so).

    Once ``out`` exists, whatever happens leaves a ``results.json`` there saying how the run
    ended: complete, interrupted, or failed with the reason and the hosts involved (a run that
    fails while deploying included). Every agent is stopped before that last write.
    """
    inventory = loaded.inventory
    # An inventory `coord run` cannot serve, or an unreadable password, fails before any host
    # is touched.
    password, timeline = target_password(inventory), phases(inventory)
    load_spec(inventory, password=password, timeline=timeline)
    writer = results.ResultsWriter(out, overwrite=overwrite)
    target = results.target_record(inventory, target_of(inventory))
    document = results.new_document(inventory, [], marks=run_marks(inventory), target=target)
    try:
        with Fleet(inventory, options=options, view=view.deploying()) as fleet:
            document = results.new_document(inventory, fleet_agents(fleet),
                                            marks=run_marks(inventory), target=target,
                                            created=document.created)
            writer.write(document)
            fleet.start_result.raise_for_failures()
            forced_over = take_run_locks(fleet, run_holder(), force=force)
            if forced_over:
                document = results.new_document(
                    inventory, fleet_agents(fleet),
                    marks=[*run_marks(inventory), "forced-over-run-lock"],
                    forced_over=forced_over, target=target, created=document.created)
                writer.write(document)
            clients = [fleet.sessions[host.name] for host in inventory.clients]
            done: list[stats.RepetitionFigures] = []
            prepared: dict[str, Prepared] = {}  # what each client's load runs with
            for index in range(inventory.benchmark.repetitions):
                view.repetition(index, inventory.benchmark.repetitions)
                figures, repetition = run_repetition(
                    index, clients, inventory, view, password=password, timeline=timeline,
                    on_prepared=prepared.update)
                done.append(figures)
                document = document.with_repetition(repetition, stats.aggregate(done)) \
                    .with_ran_with(ran_with_records(prepared))
                writer.write(document)
                writer.write_hgrm(repetition.index, figures.histogram)
                view.repetition_done(repetition)
    except KeyboardInterrupt:
        # Leaving the fleet stopped every agent and its load at once (no stop_load: it would
        # queue behind a pending call, a preload, on the same link).
        writer.write(document.finish("interrupted", marks=["interrupted"]))
        raise RunInterrupted(
            f"interrupted; {len(document.repetitions)} finished repetition(s) kept in "
            f"{writer.results_path}"
        ) from None
    except CoordError as exc:
        writer.write(document.finish("failed", failure=failure_record(exc)))
        raise
    document = document.finish("complete")
    writer.write(document)
    return RunOutcome(writer.directory, document)


def failure_record(error: CoordError) -> results.FailureRecord:
    """What ``results.json`` keeps of the error that ended a run: its lines and its hosts."""
    return results.FailureRecord(reason="; ".join(error.lines()), hosts=error_hosts(error))


def error_hosts(error: CoordError) -> list[str]:
    """The hosts an error is about, sorted; empty for an error about no host."""
    if isinstance(error, HostError):
        return [error.host]
    if isinstance(error, FleetError):
        return sorted(error.failures)
    if isinstance(error, RunFailed):
        return sorted(error.hosts)
    return []


def check_repetitions(inventory: Inventory, *, explicit: bool) -> None:
    """Fewer than 3 repetitions only when asked for on the command line."""
    count = inventory.benchmark.repetitions
    if count < 3 and not explicit:
        raise UsageError(
            f"benchmark.repetitions is {count}; the methodology asks for at least 3 "
            f"(pass --repetitions {count} to run fewer on purpose; the results are marked)"
        )


def run_marks(inventory: Inventory) -> list[str]:
    """Marks the whole run carries, from the inventory (fewer repetitions, shared host,
    hosts that are one machine)."""
    marks = []
    if inventory.benchmark.repetitions < 3:
        marks.append("fewer-than-3-repetitions")
    if inventory.shared_hosts:
        marks.append("load-on-server-host")
    if inventory.same_machine_groups:
        marks.append("hosts-share-a-machine")
    return marks


def run_holder() -> Holder:
    """This run, as the hosts' run locks describe it: operator, coordinator pid, start."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry
        user = f"uid{os.getuid()}"
    return Holder(operator=f"{user}@{socket.gethostname()}", coordinator_pid=os.getpid(),
                  since=utc_text(time.time()))


def take_run_locks(fleet: Fleet, holder: Holder, *,
                   force: bool) -> list[results.ForcedOverRecord]:
    """Every host's run lock, held until its agent stops (the end of the run); a host another
    run holds fails the run before any load, naming the holder, unless ``force``: then the
    holders are returned, for the results."""
    sessions = fleet.sessions
    taken = fan_out(sorted(sessions),
                    lambda name, _: sessions[name].link.take_run_lock(holder, force=force))
    taken.raise_for_failures()
    return [results.ForcedOverRecord(host=name, held_by=held_by)
            for name, held_by in sorted(taken.succeeded.items()) if held_by is not None]


def fleet_agents(fleet: Fleet) -> list[results.AgentRecord]:
    """Per agent: host, versions, bundle and clock offset, for the document."""
    return [
        results.agent_record(
            name,
            session.clock,
            python=session.info.python,
            agent_version=session.info.agent_version,
            bundle_hash=session.deployment.bundle.hash,
        )
        for name, session in sorted(fleet.sessions.items())
    ]


def ran_with_records(prepared: Mapping[str, Prepared]) -> dict[str, results.RanWithRecord]:
    """Per client: what its load runs with, for its agent's record."""
    return {name: results.RanWithRecord(
                driver=answer.driver, driver_version=answer.driver_version,
                processes=answer.processes, connections=answer.connections,
                pipeline=answer.pipeline, interpreter=answer.interpreter)
            for name, answer in prepared.items()}


def run_repetition(index: int, clients: list[AgentSession], inventory: Inventory,
                   view: RunView, *, password: str | None, timeline: Timeline,
                   on_prepared: Callable[[Mapping[str, Prepared]], None] | None = None,
                   ) -> tuple[stats.RepetitionFigures, results.Repetition]:
    """Prepare, start at a common instant, watch, collect and merge one repetition.

    ``password`` is the target's, read once per run by ``target_password``; ``timeline`` the
    run's phases in whole intervals, computed once per run by ``phases``; ``on_prepared``
    hears what every client prepared (what its load will run with).
    """
    by_name = {client.host.name: client for client in clients}
    # The keyspace is preloaded once: by the first client, before the first repetition.
    preloading = clients[0].host.name if index == 0 else None

    def prepare(name: str, report: StageReporter) -> Prepared:
        spec = load_spec(inventory, by_name[name].host, password=password,
                         first_load=name == preloading, timeline=timeline)
        return by_name[name].link.prepare_load(spec)

    prepared = fan_out(list(by_name), prepare)
    prepared.raise_for_failures()
    if on_prepared is not None:
        on_prepared(prepared.succeeded)

    slowest_rtt_s = max(client.clock.rtt_ns for client in clients) / 1e9
    t0_ns = time.time_ns() + int((START_MARGIN_S + slowest_rtt_s) * 1e9)
    with collector_paused():  # no collection (~15 ms) while start instants are sent
        def start(name: str, report: StageReporter) -> None:
            session = by_name[name]
            session.link.start_load(to_agent_time(t0_ns, session.clock))

        fan_out(list(by_name), start).raise_for_failures()
    _watch(by_name, t0_ns, timeline.total_s, view)

    def collect(name: str, report: StageReporter) -> stats.AgentReport:
        text = by_name[name].link.load_report()
        return stats.parse_agent_report(text, name, stats.HISTOGRAM_PARAMS)

    collected = fan_out(list(by_name), collect)
    collected.raise_for_failures()
    reports = [collected.succeeded[name] for name in by_name]
    interval_ns = timeline.interval_ns
    odd = sorted(report.host for report in reports if report.interval_ns != interval_ns)
    if odd:
        raise RunFailed(f"{', '.join(odd)}: load report uses another sampling interval than "
                        f"the {interval_ns / 1e9:g}s asked for", odd)
    window = stats.common_window(reports)
    figures = stats.repetition_figures(reports, window)
    marks = repetition_marks(figures, window, inventory.benchmark.error_threshold)
    skew_ns = stats.start_skew_ns(reports, {name: s.clock for name, s in by_name.items()})
    started = datetime.fromtimestamp(t0_ns / 1e9, timezone.utc)
    repetition = results.build_repetition(index + 1, figures, started=started,
                                          start_skew_ns=skew_ns, marks=marks)
    return figures, repetition


def repetition_marks(figures: stats.RepetitionFigures, window: list[int],
                     error_threshold: float) -> list[str]:
    """Flags on one repetition: too many errors, no common measurement window."""
    marks = []
    if not window:
        marks.append("no-common-window")
    if figures.error_rate > error_threshold:
        marks.append("error-rate-above-threshold")
    return marks


def _watch(by_name: dict[str, AgentSession], t0_ns: int, total_s: float,
           view: RunView) -> None:
    """Poll every client's progress until all finished; fail if one is lost or stuck."""
    deadline = t0_ns / 1e9 + total_s + FINISH_GRACE_S
    while True:
        polled = fan_out(list(by_name), lambda name, _: by_name[name].link.load_progress())
        if polled.failed:
            raise RunFailed("; ".join(str(f.error) for f in polled.failed.values()),
                            list(polled.failed))
        elapsed = max(0.0, time.time_ns() / 1e9 - t0_ns / 1e9)
        view.progress(min(elapsed, total_s), total_s, polled.succeeded)
        broken = {name: p for name, p in polled.succeeded.items() if p.state == "failed"}
        if broken:
            raise RunFailed("; ".join(f"{name}: load failed: {p.problem}"
                                      for name, p in sorted(broken.items())), list(broken))
        if all(p.state in ("finished", "stopped") for p in polled.succeeded.values()):
            return
        if time.time() > deadline:
            stuck = [name for name, p in polled.succeeded.items()
                     if p.state not in ("finished", "stopped")]
            raise RunFailed(f"{', '.join(stuck)}: load did not finish "
                            f"{FINISH_GRACE_S:g}s after its planned end", stuck)
        time.sleep(PROGRESS_PERIOD_S)



