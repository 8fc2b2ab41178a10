"""One benchmark run, as the explicit steps of :data:`coordinator.run.steps.STEPS`.

    check targets → connect fleet → lock hosts → for each repetition:
        prepare → start at T0 → watch → collect → merge → judge → persist

:func:`run` takes a started fleet and leaves it running, so a sweep can run many plans over
one fleet; :func:`run_benchmark` (`coord run`) checks the targets, starts the fleet, runs one
plan over it and stops every agent, whatever happened.

Each repetition is written to ``results.json`` (atomic replace) as soon as it is collected, so
an interrupted run keeps every finished repetition. Everything statistical is in
:mod:`coordinator.core.stats`; the document's shape is :mod:`coordinator.results.model`.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from agent.drivers.spec import Timeline
from agent.messages import LoadProgress, LoadState, Prepared
from agent.runlock import Holder, utc_text
from coordinator import results
from coordinator.core import marks, stats
from coordinator.core.clock import to_agent_time
from coordinator.core.collector import collector_paused
from coordinator.core.errors import CoordError, FleetError, HostError, UsageError
from coordinator.core.histograms import HISTOGRAM_PARAMS, decode_histogram
from coordinator.core.reports import AgentReport, agent_report
from coordinator.inventory.loader import LoadedInventory
from coordinator.inventory.schema import Inventory
from coordinator.inventory.server_auth import target_password
from coordinator.remote.deploy import DeployOptions, Transport
from coordinator.remote.fanout import ProgressView, StageReporter, fan_out
from coordinator.remote.fleet import AgentSession, Fleet
from coordinator.run.loadspec import load_spec, phases, target_of
from coordinator.run.steps import REPETITION_STEPS

START_MARGIN_S = 0.3
"""T0 lies this far in the future (plus the slowest agent's round trip) when it is sent."""
PROGRESS_PERIOD_S = 0.5
"""How often the live view asks every client for its progress."""
FINISH_GRACE_S = 15.0
#: Load states that end a repetition normally.
_OVER = frozenset({LoadState.FINISHED, LoadState.STOPPED})
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


@dataclass(frozen=True)
class RunPlan:
    """What one run does, checked before any host is touched: the inventory, the target's
    password (read once), the target record for the results, and the phases in whole
    intervals (computed once, sent as they are to every client)."""

    inventory: Inventory
    password: str | None
    target: results.TargetRecord
    timeline: Timeline


StepHook = Callable[[str], None]
"""Told the name of each step (:data:`coordinator.run.steps.STEPS`) as the run starts it."""


def _no_hook(name: str) -> None:
    """The default :data:`StepHook`: nothing to tell."""


def check_targets(inventory: Inventory) -> RunPlan:
    """Step "check targets": an inventory `coord run` cannot serve, or an unreadable password,
    fails here, before any host is touched."""
    password, timeline = target_password(inventory), phases(inventory)
    load_spec(inventory, password=password, timeline=timeline)
    return RunPlan(inventory, password, results.target_record(inventory, target_of(inventory)),
                   timeline)


class RunRecord:
    """A run's ``results.json`` as it is written: the latest document, and whether the run
    already wrote how it ended."""

    def __init__(self, plan: RunPlan, out: Path, *, overwrite: bool = False) -> None:
        self.plan = plan
        self.writer = results.ResultsWriter(out, overwrite=overwrite)
        self.document = results.new_document(plan.inventory, [], marks=run_marks(plan.inventory),
                                             target=plan.target)
        self.ended = False

    def write(self, document: results.ResultsDocument) -> None:
        self.document = document
        self.writer.write(document)

    def end(self, document: results.ResultsDocument) -> None:
        """Write the last document of the run (complete, interrupted or failed)."""
        self.write(document)
        self.ended = True


@contextlib.contextmanager
def recorded(record: RunRecord) -> Iterator[None]:
    """Whatever ends the block (Ctrl-C, a ``CoordError``) is written to ``record`` as the run's
    end, once: nested blocks leave it to the innermost. Put it outside the fleet's block and
    every agent is stopped before that write."""
    try:
        yield
    except KeyboardInterrupt:
        if not record.ended:
            record.end(record.document.finish("interrupted", marks=[marks.INTERRUPTED.name]))
        raise RunInterrupted(
            f"interrupted; {len(record.document.repetitions)} finished repetition(s) kept in "
            f"{record.writer.results_path}"
        ) from None
    except CoordError as exc:
        if not record.ended:
            record.end(record.document.finish("failed", failure=failure_record(exc)))
        raise


def run_benchmark(loaded: LoadedInventory, out: Path, view: RunView,
                  options: DeployOptions | None = None, *, overwrite: bool = False,
                  force: bool = False, transport: Transport | None = None,
                  on_step: StepHook = _no_hook) -> RunOutcome:
    """Run the inventory's benchmark: check the targets, start the fleet, then :func:`run`.
    Results go to ``out`` as they happen. ``force`` runs even where another run holds a host's
    run lock (the results say so); ``transport`` places the agents (default: over SSH).

    Once ``out`` exists, whatever happens leaves a ``results.json`` there saying how the run
    ended: complete, interrupted, or failed with the reason and the hosts involved (a run that
    fails while deploying included). Every agent is stopped before a failure is written.
    """
    on_step("check targets")
    plan = check_targets(loaded.inventory)
    record = RunRecord(plan, out, overwrite=overwrite)
    with recorded(record):
        on_step("connect fleet")
        with Fleet(plan.inventory, options=options, view=view.deploying(),
                   transport=transport) as fleet:
            return run(fleet, plan, view, record=record, force=force, on_step=on_step)


def run(fleet: Fleet, plan: RunPlan, view: RunView, *, record: RunRecord | None = None,
        out: Path | None = None, force: bool = False,
        on_step: StepHook = _no_hook) -> RunOutcome:
    """Run ``plan``'s repetitions over a started ``fleet`` (left running: a sweep runs many
    plans over one fleet without restarting agents or re-measuring clocks).

    Results go to ``record`` (or a new one in ``out``); a failure or Ctrl-C is written to it
    before it leaves, and the agents keep running: stopping them is the fleet owner's job.
    """
    if record is None:
        if out is None:
            raise ValueError("run() needs a record or an output directory")
        record = RunRecord(plan, out)
    with recorded(record):
        _adopt_fleet(record, fleet)
        on_step("lock hosts")
        forced_over = take_run_locks(fleet, run_holder(), force=force)
        if forced_over:
            record.write(results.new_document(
                plan.inventory, fleet_agents(fleet),
                marks=[*run_marks(plan.inventory), marks.FORCED_OVER_RUN_LOCK.name],
                forced_over=forced_over, target=plan.target, created=record.document.created))
        clients = {host.name: fleet.sessions[host.name] for host in plan.inventory.clients}
        for index in range(plan.inventory.benchmark.repetitions):
            view.repetition(index, plan.inventory.benchmark.repetitions)
            state = RepetitionState(index, plan, clients, view, record)
            for step in REPETITION_STEPS:
                on_step(step.name)
                REPETITION_STEP_ACTIONS[step.name](state)
        record.end(record.document.finish("complete"))
    return RunOutcome(record.writer.directory, record.document)


def _adopt_fleet(record: RunRecord, fleet: Fleet) -> None:
    """Record the fleet's agents, then fail if some host could not start one."""
    plan = record.plan
    record.write(results.new_document(plan.inventory, fleet_agents(fleet),
                                      marks=run_marks(plan.inventory), target=plan.target,
                                      created=record.document.created))
    fleet.start_result.raise_for_failures()


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
    run_level = []
    if inventory.benchmark.repetitions < 3:
        run_level.append(marks.FEWER_THAN_3_REPETITIONS.name)
    if inventory.shared_hosts:
        run_level.append(marks.LOAD_ON_SERVER_HOST.name)
    if inventory.same_machine_groups:
        run_level.append(marks.HOSTS_SHARE_A_MACHINE.name)
    return run_level


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
            bundle_hash=session.deployment.bundle.hash if session.deployment else None,
        )
        for name, session in sorted(fleet.sessions.items())
    ]


@dataclass
class RepetitionState:
    """One repetition as its steps fill it in, each step reading what the previous ones left."""

    index: int
    plan: RunPlan
    clients: dict[str, AgentSession]
    view: RunView
    record: RunRecord
    t0_ns: int = 0
    reports: list[AgentReport] = field(default_factory=list)
    repetition: results.Repetition | None = None
    """None until the "merge" step."""


def _prepare(state: RepetitionState) -> None:
    """Every client's driver prepared; the keyspace is preloaded once, by the first client,
    before the first repetition."""
    inventory, by_name = state.plan.inventory, state.clients
    preloading = next(iter(by_name)) if state.index == 0 else None

    def prepare(name: str, report: StageReporter) -> Prepared:
        spec = load_spec(inventory, by_name[name].host, password=state.plan.password,
                         first_load=name == preloading, timeline=state.plan.timeline)
        return by_name[name].link.prepare_load(spec)

    prepared = fan_out(list(by_name), prepare)
    prepared.raise_for_failures()
    record = state.record
    record.write(record.document.with_ran_with(ran_with_records(prepared.succeeded)))


def ran_with_records(prepared: Mapping[str, Prepared]) -> dict[str, results.RanWithRecord]:
    """Per client: what its load runs with, for its agent's record."""
    return {name: results.RanWithRecord(
                driver=answer.driver, driver_version=answer.driver_version,
                processes=answer.processes, connections=answer.connections,
                pipeline=answer.pipeline, interpreter=answer.interpreter)
            for name, answer in prepared.items()}


def _start_at_t0(state: RepetitionState) -> None:
    """T0 chosen past the slowest round trip, sent to every client in its own clock."""
    by_name = state.clients
    slowest_rtt_s = max(client.clock.rtt_ns for client in by_name.values()) / 1e9
    state.t0_ns = time.time_ns() + int((START_MARGIN_S + slowest_rtt_s) * 1e9)
    with collector_paused():  # no collection (~15 ms) while start instants are sent
        def start(name: str, report: StageReporter) -> None:
            session = by_name[name]
            session.link.start_load(to_agent_time(state.t0_ns, session.clock))

        fan_out(list(by_name), start).raise_for_failures()


def _watch(state: RepetitionState) -> None:
    """Poll every client's progress until all finished; fail if one is lost or stuck."""
    by_name, total_s = state.clients, state.plan.timeline.total_s
    deadline = state.t0_ns / 1e9 + total_s + FINISH_GRACE_S
    while True:
        polled = fan_out(list(by_name), lambda name, _: by_name[name].link.load_progress())
        if polled.failed:
            raise RunFailed("; ".join(str(f.error) for f in polled.failed.values()),
                            list(polled.failed))
        elapsed = max(0.0, time.time_ns() / 1e9 - state.t0_ns / 1e9)
        state.view.progress(min(elapsed, total_s), total_s, polled.succeeded)
        broken = {name: p for name, p in polled.succeeded.items() if p.state is LoadState.FAILED}
        if broken:
            raise RunFailed("; ".join(f"{name}: load failed: {p.problem}"
                                      for name, p in sorted(broken.items())), list(broken))
        if all(p.state in _OVER for p in polled.succeeded.values()):
            return
        if time.time() > deadline:
            stuck = [name for name, p in polled.succeeded.items()
                     if p.state not in _OVER]
            raise RunFailed(f"{', '.join(stuck)}: load did not finish "
                            f"{FINISH_GRACE_S:g}s after its planned end", stuck)
        time.sleep(PROGRESS_PERIOD_S)


def _collect(state: RepetitionState) -> None:
    """Every client's load report, refused if it was sampled at another interval."""
    by_name = state.clients

    def collect(name: str, report: StageReporter) -> AgentReport:
        return agent_report(by_name[name].link.load_report(), name, HISTOGRAM_PARAMS)

    collected = fan_out(list(by_name), collect)
    collected.raise_for_failures()
    state.reports = [collected.succeeded[name] for name in by_name]
    interval_ns = state.plan.timeline.interval_ns
    odd = sorted(r.host for r in state.reports if r.interval_ns != interval_ns)
    if odd:
        raise RunFailed(f"{', '.join(odd)}: load report uses another sampling interval than "
                        f"the {interval_ns / 1e9:g}s asked for", odd)


def _merge(state: RepetitionState) -> None:
    """The repetition's figures, from the intervals every client measured completely."""
    clocks = {name: session.clock for name, session in state.clients.items()}
    state.repetition = stats.repetition_figures(
        state.reports, stats.common_window(state.reports), index=state.index + 1,
        started=datetime.fromtimestamp(state.t0_ns / 1e9, timezone.utc),
        start_skew_ns=stats.start_skew_ns(state.reports, clocks),
        start_skew_uncertainty_ns=stats.start_skew_uncertainty_ns(state.reports, clocks),
        first_request_spread_ns=stats.first_request_spread_ns(state.reports))


def _judge(state: RepetitionState) -> None:
    """The repetition's marks (see :mod:`coordinator.core.marks`)."""
    repetition = _merged(state)
    threshold = state.plan.inventory.benchmark.error_threshold
    state.repetition = repetition.with_marks(repetition_marks(repetition, threshold))


def _persist(state: RepetitionState) -> None:
    """The repetition and the new aggregate in ``results.json``, its histogram beside it."""
    repetition, record = _merged(state), state.record
    summary = stats.aggregate([*record.document.repetitions, repetition])
    record.write(record.document.with_repetition(repetition, summary))
    record.writer.write_hgrm(repetition.index, decode_histogram(repetition.histogram))
    state.view.repetition_done(repetition)


def _merged(state: RepetitionState) -> results.Repetition:
    if state.repetition is None:
        raise RuntimeError("a repetition step ran before the merge step")
    return state.repetition


REPETITION_STEP_ACTIONS: Mapping[str, Callable[[RepetitionState], None]] = {
    "prepare": _prepare,
    "start at T0": _start_at_t0,
    "watch": _watch,
    "collect": _collect,
    "merge": _merge,
    "judge": _judge,
    "persist": _persist,
}
"""What each repetition step of :data:`coordinator.run.steps.STEPS` does, by name."""


def repetition_marks(repetition: results.Repetition, error_threshold: float) -> list[str]:
    """Flags on one repetition: too many errors, no common measurement window."""
    flags = []
    if not repetition.window.intervals:
        flags.append(marks.NO_COMMON_WINDOW.name)
    if repetition.error_rate > error_threshold:
        flags.append(marks.ERROR_RATE_ABOVE_THRESHOLD.name)
    return flags
