"""Warm re-deploy (bundle unchanged) per host, hosts in parallel. Target (design §7): <= 1 s.

On a lab of a server and 4 clients (5 hosts): one cold deploy (first upload to every host),
then ``--rounds`` warm deploys, each the whole ``Fleet.start()`` (connect, probe Python,
bundle check, agent start, RPyC link, clock) followed by ``Fleet.stop()`` (timed apart). Each
warm round is paired with an anchor round measured just before it, the same hosts in parallel:
a bare SSH connect (same host-key check and key auth) plus the command ``true``. The ratio
warm deploy / bare SSH is what coord adds on top of reaching the hosts at all.

Then the bundle step alone: ``ensure_bundle`` on open connections (warm: one remote Python
command that finds the bundle complete), next to ``python3 -I -c pass`` on the same
connections (what any remote Python command costs).

    sudo .venv/bin/python bench/bench_redeploy.py [--rounds 10] [--clients 4]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from _lab import (
    check_started,
    deploy_options,
    header,
    lab,
    median,
    ms,
    note,
    parser,
    percentile,
    ratio,
    run_main,
    table,
    uninterruptible,
    verdict,
)

from coordinator.inventory.schema import Host, Inventory
from coordinator.remote.bundle import Bundle, ensure_bundle
from coordinator.remote.deploy import DeployOptions
from coordinator.remote.fleet import Fleet
from coordinator.remote.ssh import SSHHost

TARGET_S = 1.0
T = TypeVar("T")

STAGES = {
    "connecting": "connect",
    "checking python": "probe",
    "building bundle": "bundle:local",
    "uploading": "bundle:host",
    "starting agent": "agent start",
    "linking": "link",
    "clock": "clock",
}
"""Fleet stage -> column. ``bundle:local`` finds (or builds) the bundle on this machine,
``bundle:host`` checks (or uploads) it on the host; other stages go to ``other``."""
COLUMNS = [*STAGES.values(), "other"]


@dataclass
class DeployRound:
    wall: float
    """``Fleet.start()`` for all hosts."""
    stop: float
    """``Fleet.stop()`` for all hosts."""
    hosts: dict[str, float]
    """Host -> its own start time (sum of its stages)."""
    stages: dict[str, dict[str, float]]
    """Host -> column -> seconds."""
    uploaded: dict[str, int]
    cached: dict[str, bool]
    bundle: Bundle


@dataclass
class AnchorRound:
    wall: float
    hosts: dict[str, float]
    """Host -> connect + ``true``."""


def in_parallel(hosts: list[Host], work: Callable[[Host], T]) -> tuple[float, dict[str, T]]:
    """``work`` on every host at once; wall time and each host's answer."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        answers = list(pool.map(work, hosts))
    return time.perf_counter() - started, {h.name: a for h, a in zip(hosts, answers, strict=True)}


def columns_of(timings: dict[str, float]) -> dict[str, float]:
    out = dict.fromkeys(COLUMNS, 0.0)
    for stage, seconds in timings.items():
        out[STAGES.get(stage, "other")] += seconds
    return out


def deploy_round(inventory: Inventory, options: DeployOptions) -> DeployRound:
    fleet = Fleet(inventory, options=options)
    try:
        started = time.perf_counter()
        result = fleet.start()
        wall = time.perf_counter() - started
        check_started(result)
    finally:
        with uninterruptible():
            started = time.perf_counter()
            fleet.stop()
            stop = time.perf_counter() - started
    sessions = result.succeeded
    return DeployRound(
        wall=wall,
        stop=stop,
        hosts={h: sum(t.values()) for h, t in result.timings.items()},
        stages={h: columns_of(t) for h, t in result.timings.items()},
        uploaded={h: s.deployment.result.bytes_uploaded for h, s in sessions.items()},
        cached={h: s.deployment.result.cached for h, s in sessions.items()},
        bundle=next(iter(sessions.values())).deployment.bundle,
    )


def anchor_round(inventory: Inventory) -> AnchorRound:
    """Bare SSH: connect (host key checked, key auth) and run ``true``; close not counted."""

    def one(host: Host) -> float:
        started = time.perf_counter()
        ssh = SSHHost(host, inventory.ssh).connect()
        try:
            ssh.run(["true"])
            return time.perf_counter() - started
        finally:
            ssh.close()

    wall, hosts = in_parallel(inventory.hosts, one)
    return AnchorRound(wall, hosts)


def bundle_step(inventory: Inventory, bundle: Bundle,
                rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]], int]:
    """Warm ``ensure_bundle`` and ``python3 -I -c pass`` on open connections, hosts in
    parallel; per host lists of seconds, and the bytes uploaded by all the checks."""
    hosts = inventory.hosts
    _, connections = in_parallel(hosts, lambda h: SSHHost(h, inventory.ssh).connect())
    checks: dict[str, list[float]] = {h.name: [] for h in hosts}
    pythons: dict[str, list[float]] = {h.name: [] for h in hosts}
    uploaded = 0

    def check(host: Host) -> tuple[float, int]:
        started = time.perf_counter()
        done = ensure_bundle(connections[host.name], bundle, inventory.agent.cache_dir)
        return time.perf_counter() - started, done.bytes_uploaded

    def python(host: Host) -> float:
        ssh = connections[host.name]
        started = time.perf_counter()
        ssh.run([ssh.python, "-I", "-c", "pass"])
        return time.perf_counter() - started

    try:
        for _ in range(rounds):
            for name, (seconds, sent) in in_parallel(hosts, check)[1].items():
                checks[name].append(seconds)
                uploaded += sent
            for name, seconds in in_parallel(hosts, python)[1].items():
                pythons[name].append(seconds)
    finally:
        for ssh in connections.values():
            ssh.close()
    return checks, pythons, uploaded


def spread(values: list[float]) -> list[str]:
    return [ms(median(values)), ms(percentile(values, 90)), ms(max(values))]


def run(args: argparse.Namespace) -> None:
    options = deploy_options(args)
    with lab(args.clients, args.lab_name, args.subnet) as (_, inventory):
        names = [h.name for h in inventory.hosts]
        header(f"warm re-deploy: {len(names)} hosts in parallel, {args.rounds} warm rounds")

        note("cold deploy ...")
        cold = deploy_round(inventory, options)
        bundle = cold.bundle
        print(f"cold deploy (first upload to every host): Fleet.start() {ms(cold.wall)}, "
              f"Fleet.stop() {ms(cold.stop)}; bundle {bundle.hash[:12]}, {bundle.size:,} bytes, "
              f"local build {'from cache' if bundle.from_cache else 'made now'}")
        table(["host", "total", *COLUMNS, "uploaded (bytes)"],
              [[n, ms(cold.hosts[n]), *(ms(cold.stages[n][c]) for c in COLUMNS),
                f"{cold.uploaded[n]:,}"] for n in names])

        warm: list[DeployRound] = []
        anchors: list[AnchorRound] = []
        for index in range(args.rounds):
            note(f"warm round {index + 1}/{args.rounds}: bare ssh, then deploy")
            anchors.append(anchor_round(inventory))
            warm.append(deploy_round(inventory, options))

        rows = []
        for n in names:
            host_times = [r.hosts[n] for r in warm]
            bare = [a.hosts[n] for a in anchors]
            rows.append([n, *spread(host_times), ms(median(bare)),
                         ratio(median(host_times), median(bare)),
                         f"{sum(r.uploaded[n] for r in warm):,}",
                         f"{sum(r.cached[n] for r in warm)}/{len(warm)}"])
        walls = [r.wall for r in warm]
        bare_walls = [a.wall for a in anchors]
        rows.append(["Fleet.start(), all", *spread(walls), ms(median(bare_walls)),
                     ratio(median(walls), median(bare_walls)),
                     f"{sum(sum(r.uploaded.values()) for r in warm):,}", ""])
        table(["host", "median", "p90", "max", "bare ssh median", "ratio",
               "uploaded (bytes)", "cached"], rows,
              title=f"warm deploy, {len(warm)} rounds (bare ssh = connect + `true`, same hosts "
                    "in parallel, measured just before each round):")
        table(["host (medians)", *COLUMNS],
              [[n, *(ms(median([r.stages[n][c] for r in warm])) for c in COLUMNS)]
               for n in names], title="warm deploy, per stage:")
        print(f"Fleet.stop() after each warm deploy: median {ms(median([r.stop for r in warm]))}"
              f", max {ms(max(r.stop for r in warm))}")
        print()

        note(f"bundle step alone, {args.bundle_rounds} rounds ...")
        checks, pythons, uploaded = bundle_step(inventory, bundle, args.bundle_rounds)
        table(["host", "median", "p90", "max", "python -c pass median", "ratio"],
              [[n, *spread(checks[n]), ms(median(pythons[n])),
                ratio(median(checks[n]), median(pythons[n]))] for n in names],
              title=f"bundle step alone: ensure_bundle() warm on an open connection, hosts in "
                    f"parallel, {args.bundle_rounds} rounds ({uploaded:,} bytes uploaded):")

        worst = max(percentile([r.hosts[n] for r in warm], 90) for n in names)
        print(f"slowest host's p90: {ms(worst)}; bytes uploaded by all warm deploys: "
              f"{sum(sum(r.uploaded.values()) for r in warm):,}")
        verdict("warm re-deploy, hosts in parallel (median Fleet.start())",
                ms(median(walls)), f"<= {TARGET_S:g} s", median(walls) <= TARGET_S)


def main() -> int:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--clients", type=int, default=4, help="client hosts (plus one server)")
    cli.add_argument("--rounds", type=int, default=10, help="warm deploys (each with its anchor)")
    cli.add_argument("--bundle-rounds", type=int, default=10,
                     help="rounds of the bundle step alone")
    args = cli.parse_args()
    if args.rounds < 1 or args.bundle_rounds < 1:
        cli.error("--rounds and --bundle-rounds must be at least 1")
    return run_main(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
