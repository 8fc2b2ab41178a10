"""`coord compare` on real runs (rootless local runs as in test_local_run: real agents, a real
Redis on loopback): two runs with the same settings show no regression beyond noise; a run
against the same server slowed on purpose (its redis-server put in a CPU cgroup with a quota
of 2 % of a core) is a regression beyond noise, and `--fail-on-regression 5` exits 1 naming
the figure. The slowed run needs root for the cgroup. Not a lab test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from coordinator.inventory.loader import load_inventory
from coordinator.lab.cgroups import (
    add_to_cgroup,
    cpu_cgroup_root,
    make_cpu_cgroup,
    remove_cgroup,
)
from coordinator.report.compare import compare
from coordinator.report.generate import load_directory, write_report
from coordinator.run.runner import run_benchmark
from tests.conftest import RunCoord
from tests.helpers import MeasureView
from tests.integration.test_local_run import (  # noqa: F401 - fixtures used by name
    redis_port,
    transport,
    write_inventory,
)
from tests.local_transport import LocalTransport

GROUP = "coord-test-rep"
PERIOD_US = 100_000
SLOW_QUOTA_US = 2_000
SAME_RUN_REPETITIONS = 5
GATED_FIGURES = ("throughput", "p50")
WARMUP = "500ms"
"""Each repetition's warm-up: one interval, enough for the connections to open and settle; the
comparison reads the measured second only."""
"""The figures the equal-runs test holds the gate to: the run's centre, measured from the
thousands of replies of each 1-s repetition. The tail (p99.9, max) of a 1-s repetition rests on
a few replies and on whatever else the shared machine did in that second."""


@pytest.fixture
def slow_server(redis_port: int) -> Iterator[None]:  # noqa: F811
    """Cap the module's redis-server at 2 % of a core while the fixture lasts."""
    root = cpu_cgroup_root()
    if os.geteuid() != 0 or root is None:
        pytest.skip("needs root and a cgroup hierarchy with the cpu controller")
    client = redis.Redis(port=redis_port)
    pid = int(client.info("server")["process_id"])
    client.close()
    cgroup = make_cpu_cgroup(root, GROUP, "server", SLOW_QUOTA_US, PERIOD_US)
    try:
        add_to_cgroup(cgroup, pid)
        yield
    finally:
        add_to_cgroup(root.path, pid)
        remove_cgroup(root.path / GROUP)


def run_into(directory: Path, inventory: Path, transport: LocalTransport) -> Path:  # noqa: F811
    outcome = run_benchmark(load_inventory(inventory), directory, MeasureView(),
                            transport=transport)
    write_report(outcome.directory, "test", outcome.document)
    return outcome.directory


def test_a_slowed_server_is_a_regression_beyond_noise_and_fails_the_gate(
        tmp_path: Path, redis_port: int, transport: LocalTransport,  # noqa: F811
        run_coord: RunCoord, request: pytest.FixtureRequest) -> None:
    inventory = write_inventory(tmp_path, redis_port, repetitions=3, warmup=WARMUP)
    normal = run_into(tmp_path / "normal", inventory, transport)
    request.getfixturevalue("slow_server")
    slowed = run_into(tmp_path / "slowed", inventory, transport)

    result = run_coord("compare", str(normal), str(slowed), "--fail-on-regression", "5")

    print(result.stdout)
    assert result.status == 1, result.stderr
    assert "no difference in inventory" in result.stdout
    assert "REGRESSION" in result.stdout
    assert f"regression beyond noise and above 5%: throughput in {slowed}: -" in result.stderr


def test_two_runs_with_the_same_settings_show_no_regression_beyond_noise(
        tmp_path: Path, redis_port: int, transport: LocalTransport,  # noqa: F811
        run_coord: RunCoord) -> None:
    """Why this cannot flake but rarely: the two runs are the same, so their repetitions are
    exchangeable, and the noise test (non-overlapping ranges) calls a figure a regression only
    when all 5 repetitions of B are worse than all 5 of A: one ordering in C(10, 5) = 252, a
    chance of 0.4 % per figure (only the worse direction counts: a regression, not a change).
    The assertion covers the 2 figures of ``GATED_FIGURES``, so at most 2/252 = 0.8 % of runs
    of this test fail by chance (union bound; the two figures are correlated, which only lowers
    it). Ties never count: the error rate, 0 in both runs, is never beyond noise. What breaks
    exchangeability is a machine whose load shifts between the two runs (other tests starting
    on the same shared cores): run one after the other, the repetitions of each would sit at a
    different level, a real difference the runs cannot tell from a regression. So the two runs
    run at the same time, each with its own agents, against the same Redis: whatever the
    machine does in a second weighs on both runs' repetitions of that second alike.
    """
    inventory = write_inventory(tmp_path, redis_port, repetitions=SAME_RUN_REPETITIONS,
                                warmup=WARMUP)
    other = LocalTransport(tmp_path / "hosts-second")
    try:
        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(run_into, tmp_path / name, inventory, placed)
                    for name, placed in (("first", transport), ("second", other))]
            first, second = (run.result() for run in runs)
    finally:
        other.kill_all()

    result = run_coord("compare", str(first), str(second))
    comparison = compare([str(first), str(second)],
                         [load_directory(first), load_directory(second)])

    print(result.stdout)
    assert result.status == 0, result.stderr
    # The platform may differ: these runs share the machine's own network namespace, where
    # other tests' labs add and remove interfaces. Nothing the runs were set up with does.
    assert [d.what for d in comparison.differences if not d.what.startswith("platform.")] == []
    gated = {figure.kind.name: figure.runs[1] for figure in comparison.figures
             if figure.kind.name in GATED_FIGURES}
    assert set(gated) == set(GATED_FIGURES)
    for name, run in gated.items():
        assert len(run.values) == SAME_RUN_REPETITIONS
        assert not run.regression, f"{name}: {run.values} against the first run's"
    error_rate = next(f for f in comparison.figures if f.kind.name == "error_rate")
    assert not error_rate.runs[1].beyond_noise
