"""Fan-out keeps every host's outcome: one failure never hides the others' results."""

from __future__ import annotations

import threading

import pytest

from coordinator.errors import FleetError, HostUnreachable, InventoryError, Problem
from coordinator.fanout import StageReporter, fan_out


def test_partial_results_keep_successes_and_failures() -> None:
    def work(host: str, report: StageReporter) -> int:
        report("connecting")
        if host == "b":
            raise HostUnreachable(host, "cannot connect")
        report("uploading")
        return len(host)

    result = fan_out(["a", "b", "ccc"], work)
    assert result.succeeded == {"a": 1, "ccc": 3}
    assert set(result.failed) == {"b"}
    assert result.failed["b"].stage == "connecting"
    assert str(result.failed["b"].error) == "b: cannot connect"
    assert set(result.timings["a"]) >= {"connecting", "uploading"}
    with pytest.raises(FleetError) as raised:
        result.raise_for_failures()
    assert raised.value.lines() == ["b: cannot connect"]


def test_other_coord_errors_are_attributed_to_the_host() -> None:
    def work(host: str, report: StageReporter) -> None:
        raise InventoryError([Problem("hosts", "bad")])

    result = fan_out(["x"], work)
    assert result.failed["x"].error.host == "x"


def test_hosts_run_in_parallel() -> None:
    barrier = threading.Barrier(3, timeout=10)

    def work(host: str, report: StageReporter) -> str:
        barrier.wait()
        return host

    assert set(fan_out(["a", "b", "c"], work).succeeded) == {"a", "b", "c"}


def test_a_bug_is_raised_after_every_host_finished() -> None:
    finished: list[str] = []

    def work(host: str, report: StageReporter) -> None:
        if host == "bug":
            raise ZeroDivisionError
        finished.append(host)

    with pytest.raises(ZeroDivisionError):
        fan_out(["bug", "a", "b"], work)
    assert sorted(finished) == ["a", "b"]
