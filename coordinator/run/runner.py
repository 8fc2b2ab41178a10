"""One benchmark run, as the explicit steps of :data:`coordinator.run.steps.STEPS`.

    check targets → connect fleet → lock hosts → describe platform → baseline before →
    for each repetition:
        prepare → start at T0 → watch → collect → merge → judge → persist
    → baseline after

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
from typing import Any, Protocol

from agent.drivers.spec import Timeline
from agent.messages import LoadProgress, LoadState, Prepared
from agent.metrics.model import MetricsInterval
from agent.runlock import Holder, utc_text
from coordinator import results
from coordinator.core import marks, stats, verdicts
from coordinator.core.baselines import BaselinePair, Baselines, baseline_marks, drift_lines
from coordinator.core.clock import to_agent_time
from coordinator.core.collector import collector_paused
from coordinator.core.errors import (
    CoordError,
    FleetError,
    HostError,
    StrictVerdicts,
    UsageError,
)
from coordinator.core.histograms import HISTOGRAM_PARAMS, decode_histogram
from coordinator.core.host_series import all_host_series
from coordinator.core.host_verdicts import window_indices
from coordinator.core.metrics import HostMetrics, host_metrics, unsampled
from coordinator.core.reports import AgentReport, agent_report
from coordinator.inventory.loader import LoadedInventory
from coordinator.inventory.schema import Host, Inventory
from coordinator.inventory.server_auth import server_password, target_password
from coordinator.remote.deploy import DeployOptions, Transport
from coordinator.remote.fanout import (
    FleetResult,
    HostFailure,
    ProgressView,
    StageReporter,
    fan_out,
)
from coordinator.remote.fleet import AgentSession, Fleet
from coordinator.run import baseline
from coordinator.run.loadspec import client_target, load_spec, phases, target_of, target_servers
from coordinator.run.metrics_plan import host_roles, metrics_plan, servers_by_host
from coordinator.run.platform import describe_fleet
from coordinator.run.steps import REPETITION_STEPS

START_MARGIN_S = 0.3
"""T0 lies this far in the future (plus the slowest agent's round trip) when it is sent."""
PROGRESS_PERIOD_S = 0.5
"""How often the live view asks every client for its progress."""
END_POLL_DELAY_S = 0.05
"""The first poll after the load's planned end comes this long after it (see
:func:`next_poll_in`)."""
FINISH_GRACE_S = 15.0
"""Seconds past the planned end of a repetition before agents are presumed stuck."""
#: Load states that end a repetition normally.
_OVER = frozenset({LoadState.FINISHED, LoadState.STOPPED})


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

    def progress(self, elapsed_s: float, total_s: float, clients: dict[str, LoadProgress],
                 hosts: Mapping[str, MetricsInterval]) -> None: ...

    def repetition_done(self, repetition: results.Repetition) -> None: ...

    def baseline_pair(self, when: str, pair: BaselinePair) -> None: ...


@dataclass(frozen=True)
class RunOutcome:
    """Where the results are and what they say."""

    directory: Path
    document: results.ResultsDocument


@dataclass(frozen=True)
class RunPlan:
    """What one run does, checked before any host is touched: the inventory, the target's
    password (read once), the target record for the results, and the phases in whole
    intervals (computed once, sent as they are to every client). A run loading several
    servers (``benchmark.targets``): ``target`` and ``password`` are the first target's,
    ``passwords`` every target's by server name."""

    inventory: Inventory
    password: str | None
    target: results.TargetRecord
    timeline: Timeline
    passwords: Mapping[str, str | None] = field(default_factory=dict)

    def password_of(self, server: str) -> str | None:
        """The password of target server ``server`` (the first target's when not listed)."""
        return self.passwords.get(server, self.password)


StepHook = Callable[[str], None]
"""Told the name of each step (:data:`coordinator.run.steps.STEPS`) as the run starts it."""


def _no_hook(name: str) -> None:
    """The default :data:`StepHook`: nothing to tell."""


def check_targets(inventory: Inventory) -> RunPlan:
    """Step "check targets": an inventory `coord run` cannot serve, or an unreadable password,
    fails here, before any host is touched."""
    password, timeline = target_password(inventory), phases(inventory)
    first, *others = target_servers(inventory)
    passwords = {first.name: password,
                 **{server.name: server_password(server, inventory.servers.index(server))
                    for server in others}}
    clients: list[Host | None] = [*inventory.clients] or [None]
    for client in clients:
        load_spec(inventory, client, password=passwords[client_target(inventory, client)
                                                        .server.name], timeline=timeline)
    return RunPlan(inventory, password, results.target_record(inventory, target_of(inventory)),
                   timeline, passwords)


class RunRecord:
    """A run's ``results.json`` as it is written: the latest document, and whether the run
    already wrote how it ended."""

    def __init__(self, plan: RunPlan, out: Path, *, overwrite: bool = False,
                 command_line: Sequence[str] | None = None) -> None:
        self.plan = plan
        self.command_line = command_line
        self.writer = results.ResultsWriter(out, overwrite=overwrite)
        self.document = results.new_document(plan.inventory, [], marks=run_marks(plan.inventory),
                                             target=plan.target, command_line=command_line)
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
                  on_step: StepHook = _no_hook,
                  command_line: Sequence[str] | None = None) -> RunOutcome:
    """Run the inventory's benchmark: check the targets, start the fleet, then :func:`run`.
    Results go to ``out`` as they happen. ``force`` runs even where another run holds a host's
    run lock (the results say so); ``transport`` places the agents (default: over SSH);
    ``command_line`` is what coord was started with, kept (secrets redacted) in the results.

    Once ``out`` exists, whatever happens leaves a ``results.json`` there saying how the run
    ended: complete, interrupted, or failed with the reason and the hosts involved (a run that
    fails while deploying included). Every agent is stopped before a failure is written.
    """
    on_step("check targets")
    plan = check_targets(loaded.inventory)
    record = RunRecord(plan, out, overwrite=overwrite, command_line=command_line)
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
                forced_over=forced_over, target=plan.target, created=record.document.created,
                command_line=record.command_line))
        on_step("describe platform")
        record.write(record.document.with_platform(describe_platform(fleet, plan)))
        on_step("baseline before")
        measure_baseline(fleet, record, view, "before")
        clients = {host.name: fleet.sessions[host.name] for host in plan.inventory.clients}
        for index in range(plan.inventory.benchmark.repetitions):
            view.repetition(index, plan.inventory.benchmark.repetitions)
            state = RepetitionState(index, plan, clients, view, record,
                                    hosts=dict(sorted(fleet.sessions.items())))
            for step in REPETITION_STEPS:
                on_step(step.name)
                REPETITION_STEP_ACTIONS[step.name](state)
        on_step("baseline after")
        measure_baseline(fleet, record, view, "after")
        record.end(record.document.finish("complete"))
    return RunOutcome(record.writer.directory, record.document)


def measure_baseline(fleet: Fleet, record: RunRecord, view: RunView, when: str) -> None:
    """Steps "baseline before" and "baseline after": every pair's netperf rows in the results
    (a missing netperf fails the run before any load); skipped, and marked, when disabled."""
    inventory = record.plan.inventory
    if not inventory.baseline.enabled:
        skipped = Baselines(skipped=True)
        record.write(record.document.with_baselines(skipped, baseline_marks(skipped)))
        return
    if when == "before":
        baseline.check_tools(fleet, inventory)
    rows = baseline.measure(fleet, inventory, lambda pair: view.baseline_pair(when, pair))
    current = record.document.baselines or Baselines()
    if when == "before":
        updated = current.model_copy(update={"before": rows})
    else:
        updated = current.model_copy(update={"after": rows,
                                              "drift": drift_lines(current.before, rows)})
    record.write(record.document.with_baselines(updated, baseline_marks(updated)))


def baseline_only(fleet: Fleet, inventory: Inventory, on_pair: baseline.PairHook, *,
                  force: bool = False) -> list[BaselinePair]:
    """`coord baseline`: over a started fleet, the hosts' run locks (a running benchmark is
    not disturbed), the tools checked, then every pair measured, netservers stopped after."""
    fleet.start_result.raise_for_failures()
    take_run_locks(fleet, run_holder(), force=force)
    baseline.check_tools(fleet, inventory)
    return baseline.measure(fleet, inventory, on_pair)


def _adopt_fleet(record: RunRecord, fleet: Fleet) -> None:
    """Record the fleet's agents, then fail if some host could not start one."""
    plan = record.plan
    record.write(results.new_document(plan.inventory, fleet_agents(fleet),
                                      marks=run_marks(plan.inventory), target=plan.target,
                                      created=record.document.created,
                                      command_line=record.command_line))
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


def enforce_strict(document: results.ResultsDocument) -> None:
    """``coord run --strict``: fail (exit 3) when a verdict that fails it was flagged, one line
    per verdict (client-bound, unstable, errors, skewed start; see the marks registry)."""
    failures = verdicts.strict_failures(document.repetitions, document.verdicts)
    if failures:
        raise StrictVerdicts(failures)


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


def describe_platform(fleet: Fleet, plan: RunPlan) -> results.PlatformRecord:
    """Step "describe platform": every host, and the target as the first client reaches it."""
    platform, described = describe_fleet(fleet, plan.inventory,
                                         {plan.target.server: plan.password,
                                          **plan.passwords})
    described.raise_for_failures()
    return platform


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
    host_series: list[verdicts.HostSeries] | None = None
    """The hosts' metric series for the verdicts; None: not sampled (the host verdicts are
    undecided)."""
    hosts: dict[str, AgentSession] = field(default_factory=dict)
    """Every host's agent (clients and servers): each samples its host's metrics."""
    unsampled: dict[str, str] = field(default_factory=dict)
    """Hosts whose sampling failed, and why: the load goes on without their metrics."""
    metrics: list[HostMetrics] = field(default_factory=list)

    def sampling(self) -> list[str]:
        return [name for name in self.hosts if name not in self.unsampled]

    def sampling_failed(self, failures: Mapping[str, HostFailure]) -> None:
        for name, failure in failures.items():
            self.unsampled.setdefault(name, str(failure.error))


def _prepare(state: RepetitionState) -> None:
    """Every client's driver prepared, each for its target; each target's keyspace is
    preloaded once, by its first client, before the first repetition."""
    inventory, by_name, plan = state.plan.inventory, state.clients, state.plan
    passwords = {server.name: plan.password_of(server.name)
                 for server in target_servers(inventory)}
    hosts = state.hosts

    def sample(name: str, report: StageReporter) -> None:
        hosts[name].link.start_metrics(metrics_plan(inventory, hosts[name].host,
                                                    state.plan.timeline, passwords))

    state.sampling_failed(fan_out(list(hosts), sample).failed)

    bar_shown: list[str] = []

    def preloading_progress(name: str) -> Callable[[LoadProgress], None]:
        def shown(progress: LoadProgress) -> None:  # the live view draws the preload's bar
            if progress.preload_total:
                bar_shown.append(name)
                state.view.progress(0.0, 0.0, {name: progress}, {})
        return shown

    def prepare(name: str, report: StageReporter) -> Prepared:
        loads = client_target(inventory, by_name[name].host)
        first_load = state.index == 0 and loads.first_client
        spec = load_spec(inventory, by_name[name].host, password=passwords[loads.server.name],
                         first_load=first_load, timeline=state.plan.timeline)
        return by_name[name].link.prepare_load(
            spec, preloading_progress(name) if first_load else None)

    prepared = fan_out(list(by_name), prepare)
    prepared.raise_for_failures()
    record = state.record
    record.write(record.document.with_ran_with(ran_with_records(prepared.succeeded)))
    if bar_shown:  # the preload's bar off: the repetition's view again
        state.view.repetition(state.index, inventory.benchmark.repetitions)


def ran_with_records(prepared: Mapping[str, Prepared]) -> dict[str, results.RanWithRecord]:
    """Per client: what its load runs with, for its agent's record."""
    return {name: results.RanWithRecord(
                driver=answer.driver, driver_version=answer.driver_version,
                processes=answer.processes, connections=answer.connections,
                pipeline=answer.pipeline, interpreter=answer.interpreter,
                preload_seconds=answer.preload_seconds)
            for name, answer in prepared.items()}


def _start_at_t0(state: RepetitionState) -> None:
    """T0 chosen past the slowest round trip, sent to every client in its own clock (which
    aligns the client's sampling too), and to every other sampling host's metrics."""
    by_name, hosts = state.clients, state.hosts
    slowest_rtt_s = max(client.clock.rtt_ns for client in by_name.values()) / 1e9
    state.t0_ns = time.time_ns() + int((START_MARGIN_S + slowest_rtt_s) * 1e9)
    samplers_only = [name for name in state.sampling() if name not in by_name]
    with collector_paused():  # no collection (~15 ms) while start instants are sent
        def start(name: str, report: StageReporter) -> None:
            session = hosts[name] if name in samplers_only else by_name[name]
            t0 = to_agent_time(state.t0_ns, session.clock)
            if name in samplers_only:
                session.link.align_metrics(t0)
            else:
                session.link.start_load(t0)

        started = fan_out([*by_name, *samplers_only], start)
    state.sampling_failed({name: failure for name, failure in started.failed.items()
                           if name in samplers_only})
    FleetResult(failed={name: failure for name, failure in started.failed.items()
                        if name in by_name}).raise_for_failures()


def _watch(state: RepetitionState) -> None:
    """Poll every client's progress until all finished; fail if one is lost or stuck."""
    by_name, total_s = state.clients, state.plan.timeline.total_s
    drain_s = state.plan.timeline.drain_s  # the loads may wait this long for late replies
    deadline = state.t0_ns / 1e9 + total_s + drain_s + FINISH_GRACE_S
    while True:
        polled = fan_out(list(by_name), lambda name, _: by_name[name].link.load_progress())
        if polled.failed:
            raise RunFailed("; ".join(str(f.error) for f in polled.failed.values()),
                            list(polled.failed))
        elapsed = max(0.0, time.time_ns() / 1e9 - state.t0_ns / 1e9)
        state.view.progress(min(elapsed, total_s), total_s, polled.succeeded,
                            _latest_metrics(state))
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
                            f"{FINISH_GRACE_S:g}s after its planned end and "
                            f"{drain_s:g}s drain", stuck)
        time.sleep(next_poll_in(time.time_ns() / 1e9, state.t0_ns / 1e9 + total_s))


def next_poll_in(now_s: float, planned_end_s: float) -> float:
    """Seconds to the next progress poll: every :data:`PROGRESS_PERIOD_S`, but one poll comes
    :data:`END_POLL_DELAY_S` after the load's planned end. A load is over a few ms after its
    planned end; the live view's period found it so up to half a second later, in every
    repetition. Only one poll is moved: each asks every agent twice, which on a host held to a
    small CPU quota costs the agent's own end of the load."""
    if now_s >= planned_end_s:
        return PROGRESS_PERIOD_S
    return min(PROGRESS_PERIOD_S, planned_end_s - now_s + END_POLL_DELAY_S)


def _latest_metrics(state: RepetitionState) -> dict[str, MetricsInterval]:
    """Every sampling host's last interval, for the live view; a host that does not answer
    is left out (its metrics still arrive with the collect step)."""
    hosts = state.hosts
    latest = fan_out(state.sampling(), lambda name, _: hosts[name].link.latest_metrics())
    return {name: interval for name, interval in latest.succeeded.items()
            if interval is not None}


def _collect(state: RepetitionState) -> None:
    """Every client's load report, refused if it was sampled at another interval."""
    by_name = state.clients

    def collect(name: str, report: StageReporter) -> AgentReport:
        return agent_report(by_name[name].link.load_report(), name, HISTOGRAM_PARAMS)

    collected = fan_out(list(by_name), collect)
    collected.raise_for_failures()
    _collect_metrics(state)
    state.reports = [collected.succeeded[name] for name in by_name]
    interval_ns = state.plan.timeline.interval_ns
    odd = sorted(r.host for r in state.reports if r.interval_ns != interval_ns)
    if odd:
        raise RunFailed(f"{', '.join(odd)}: load report uses another sampling interval than "
                        f"the {interval_ns / 1e9:g}s asked for", odd)


def _collect_metrics(state: RepetitionState) -> None:
    """Every host's metrics; a host whose sampling failed is stored with the reason."""
    hosts, inventory = state.hosts, state.plan.inventory
    sampled = fan_out(state.sampling(), lambda name, _: hosts[name].link.metrics_report())
    state.sampling_failed(sampled.failed)
    state.metrics = [
        host_metrics(name, host_roles(inventory, session.host), sampled.succeeded[name])
        if name in sampled.succeeded else
        unsampled(name, host_roles(inventory, session.host), state.plan.timeline.interval_ns,
                  state.unsampled.get(name, "not sampled"))
        for name, session in hosts.items()
    ]  # fmt: skip


def _merge(state: RepetitionState) -> None:
    """The repetition's figures, from the intervals every client measured completely; a run
    loading several servers, per server too (:func:`coordinator.core.stats.targets_figures`)."""
    clocks = {name: session.clock for name, session in state.clients.items()}
    targets = state.plan.inventory.benchmark.targets
    merge: Callable[..., results.Repetition] = stats.repetition_figures
    if targets is not None:
        loaded = [stats.LoadedServer(target.server, target.driver, target.clients)
                  for target in targets]

        def merge(reports: Sequence[AgentReport], window: Sequence[int],
                  **figures: Any) -> results.Repetition:
            return stats.targets_figures(reports, window, loaded, **figures)

    state.repetition = merge(
        state.reports, stats.common_window(state.reports), index=state.index + 1,
        started=datetime.fromtimestamp(state.t0_ns / 1e9, timezone.utc),
        start_skew_ns=stats.start_skew_ns(state.reports, clocks),
        start_skew_uncertainty_ns=stats.start_skew_uncertainty_ns(state.reports, clocks),
        first_request_spread_ns=stats.first_request_spread_ns(state.reports),
        run_span_ns=stats.run_span_ns(state.reports, clocks),
    ).with_metrics(state.metrics)


def _judge(state: RepetitionState) -> None:
    """The repetition's verdicts with their evidence (:mod:`coordinator.core.verdicts`), and
    its marks: the flagged verdicts' and the run's own (see :mod:`coordinator.core.marks`)."""
    repetition, inventory = _merged(state), state.plan.inventory
    threshold = inventory.benchmark.error_threshold
    if state.metrics:
        state.host_series = all_host_series(state.metrics, window_indices(repetition),
                                            state.record.document.platform,
                                            servers_by_host(inventory))
    judged = verdicts.repetition_verdicts(
        repetition, interval_s=state.plan.timeline.interval_ns / 1e9, error_threshold=threshold,
        thresholds=inventory.benchmark.thresholds, hosts=state.host_series,
        server_hosts=[host.name for host in inventory.server_hosts])
    state.repetition = repetition.with_verdicts(
        judged, [*repetition_marks(repetition, threshold), *verdicts.flagged_marks(judged)])


def _persist(state: RepetitionState) -> None:
    """The repetition and the new aggregate in ``results.json``, its histogram beside it."""
    repetition, record = _merged(state), state.record
    summary = stats.aggregate([*record.document.repetitions, repetition])
    document = record.document.with_repetition(repetition, summary)
    thresholds = state.plan.inventory.benchmark.thresholds
    record.write(document.with_verdicts(verdicts.run_verdicts(document.repetitions, thresholds)))
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
    if verdicts.error_verdict(repetition, error_threshold).state == "flagged":
        flags.append(marks.ERROR_RATE_ABOVE_THRESHOLD.name)
    return flags
