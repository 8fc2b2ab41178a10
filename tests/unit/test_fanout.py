"""Fan-out keeps every host's outcome: one failure never hides the others' results."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator

import pytest

from coordinator.core.errors import FleetError, HostUnreachable, InventoryError, Problem
from coordinator.remote.fanout import StageReporter, fan_out
from tests.helpers import poll_until


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


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """Python's own SIGINT handler for the test (an in-process `coord` may have replaced it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupt_leaves_at_once_without_waiting_for_a_blocked_worker(
    default_sigint: None,
) -> None:
    release = threading.Event()
    finished = threading.Event()

    main = threading.main_thread().ident or 0

    def main_thread_waits() -> bool:
        """The main thread is blocked waiting for a worker's result (not starting one)."""
        frame = sys._current_frames().get(main)
        names = []
        while frame is not None:
            names.append(frame.f_code.co_name)
            frame = frame.f_back
        return names[:1] == ["wait"] and "result" in names

    def work(host: str, report: StageReporter) -> None:
        poll_until(main_thread_waits, 5, "the main thread to wait for the workers")
        signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C while it waits for this worker
        release.wait(5)
        finished.set()

    with pytest.raises(KeyboardInterrupt):
        fan_out(["a"], work)
    assert not finished.is_set(), "fan_out waited for the blocked worker"
    release.set()
