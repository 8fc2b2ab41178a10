"""The steps of a run, declared once: what `coord run` performs and `coord inventory check`
announces, in order.

:mod:`coordinator.run.runner` executes exactly these steps (a unit test checks that every
repetition step has an implementation and nothing else does) and
:func:`coordinator.inventory.summary.run_plan` prints them, so the check never announces a step
the run does not perform. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from coordinator.core.durations import format_duration
from coordinator.inventory.schema import Inventory

Scope = Literal["plan", "fleet", "repetition"]
"""When a step runs: once per plan (before any host is touched, or once the fleet is up), once
per fleet (shared by every plan run over it), or once per repetition."""


@dataclass(frozen=True)
class RunStep:
    """One named step and how to describe it for an inventory."""

    name: str
    scope: Scope
    describe: Callable[[Inventory], str]


def _check_targets(inventory: Inventory) -> str:
    servers = ", ".join(server.name for server in inventory.servers)
    return f"read the password of {servers} and build the load spec before touching any host"


def _connect_fleet(inventory: Inventory) -> str:
    return (f"deploy agents to {len(inventory.hosts)} host(s) and measure their clocks (SSH "
            f"host keys: {inventory.ssh.host_key_policy}, known_hosts {inventory.ssh.known_hosts})")


def _lock_hosts(inventory: Inventory) -> str:
    return "take every host's run lock (--force runs over another run's, and says so)"


def _describe_platform(inventory: Inventory) -> str:
    servers = ", ".join(server.name for server in inventory.servers)
    return (f"every host's CPU, memory, kernel, OS, CPU quota, interfaces and tool versions, "
            f"and {servers}'s INFO server and performance settings, into results.json")


def _baseline(when: str) -> Callable[[Inventory], str]:
    def describe(inventory: Inventory) -> str:
        baseline = inventory.baseline
        if not baseline.enabled:
            return "skipped (baseline.enabled: false); the results are marked no-baseline"
        between = ("every host to every other host" if baseline.pairs == "all"
                   else "every client to every server host")
        return (f"netperf TCP_RR {when}, {between}, {baseline.iterations} x "
                f"{format_duration(baseline.duration)} per pair, netserver on port "
                f"{baseline.port} started and stopped by coord")
    return describe


def _prepare(inventory: Inventory) -> str:
    bench = inventory.benchmark
    servers = ", ".join(server.name for server in inventory.servers)
    return (f"driver {bench.driver} from {len(inventory.clients)} client(s) against {servers}, "
            f"{bench.repetitions} repetition(s) (the first preloads the keyspace if asked); "
            f"every host's agent starts sampling its system metrics")


def _start(inventory: Inventory) -> str:
    return "choose T0 and start every client at T0 in its own clock"


def _watch(inventory: Inventory) -> str:
    bench = inventory.benchmark
    return (f"{format_duration(bench.warmup)} warm-up + {format_duration(bench.duration)} "
            f"measure, sampled every {format_duration(bench.interval)}, then up to "
            f"{format_duration(bench.drain_timeout)} for the replies in flight; a lost, failed "
            f"or stuck client fails the run")


def _collect(inventory: Inventory) -> str:
    return ("each client's load report (per-interval histograms) and every host's system "
            "metrics per interval")


def _merge(inventory: Inventory) -> str:
    return "the intervals every client measured completely, merged exactly"


def _judge(inventory: Inventory) -> str:
    return (f"verdicts with evidence (error rate above "
            f"{inventory.benchmark.error_threshold:g}, unstable, skewed start, too short; "
            f"client-, server-, network-bound from host metrics) and marks")


def _persist(inventory: Inventory) -> str:
    return "write results.json and the repetition's .hgrm at once"


STEPS: tuple[RunStep, ...] = (
    RunStep("check targets", "plan", _check_targets),
    RunStep("connect fleet", "fleet", _connect_fleet),
    RunStep("lock hosts", "plan", _lock_hosts),
    RunStep("describe platform", "plan", _describe_platform),
    RunStep("baseline before", "plan", _baseline("before the first repetition")),
    RunStep("prepare", "repetition", _prepare),
    RunStep("start at T0", "repetition", _start),
    RunStep("watch", "repetition", _watch),
    RunStep("collect", "repetition", _collect),
    RunStep("merge", "repetition", _merge),
    RunStep("judge", "repetition", _judge),
    RunStep("persist", "repetition", _persist),
    RunStep("baseline after", "plan", _baseline("after the last repetition")),
)
"""Every step of a run, in the order it is performed."""

REPETITION_STEPS: tuple[RunStep, ...] = tuple(s for s in STEPS if s.scope == "repetition")
"""The steps each repetition performs, in order."""


def step_names(scope: Scope | None = None) -> list[str]:
    """The names of the steps (of one scope), in order."""
    return [step.name for step in STEPS if scope is None or step.scope == scope]


def plan_lines(inventory: Inventory) -> list[str]:
    """One line per step, for `coord inventory check`."""
    return [f"{number}. {step.name}: {step.describe(inventory)}"
            for number, step in enumerate(STEPS, start=1)]
