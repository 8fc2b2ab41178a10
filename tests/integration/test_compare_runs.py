"""`coord compare` on real runs (rootless local runs as in test_local_run: real agents, a real
Redis on loopback): a run against the same server slowed on purpose (its redis-server put in
a CPU cgroup with a quota of 2 % of a core) is a regression beyond noise, and
`--fail-on-regression 5` exits 1 naming the figure. Needs root for the cgroup. Not a lab test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
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
from coordinator.report.generate import write_report
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
    inventory = write_inventory(tmp_path, redis_port, repetitions=3)
    normal = run_into(tmp_path / "normal", inventory, transport)
    request.getfixturevalue("slow_server")
    slowed = run_into(tmp_path / "slowed", inventory, transport)

    result = run_coord("compare", str(normal), str(slowed), "--fail-on-regression", "5")

    print(result.stdout)
    assert result.status == 1, result.stderr
    assert "no difference in inventory" in result.stdout
    assert "REGRESSION" in result.stdout
    assert f"regression beyond noise and above 5%: throughput in {slowed}: -" in result.stderr
