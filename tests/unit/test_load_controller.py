"""agent.load.LoadController: the order of calls, with a driver that loads nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest

from agent.drivers.base import Driver, DriverError, LoadState, Prepared, Progress, no_keepalive
from agent.drivers.intervals import LoadReport
from agent.drivers.spec import LoadSpec
from agent.load import LoadController
from agent.messages import LoadStarted, LoadStopped
from tests.helpers import poll_until

SPEC = {
    "format": 2,
    "driver": "fake",
    "target": {"address": "h", "port": 1, "password": None, "username": None, "tls": None},
    "timeline": {"interval_ns": 1_000_000_000, "warmup_intervals": 0, "measure_intervals": 1},
    "histogram": {"lowest_usec": 1, "highest_usec": 60000000, "significant_figures": 3},
    "params": {},
}


class FakeDriver(Driver):
    name = "fake"
    version = "1"

    def __init__(self, made: list[FakeDriver]) -> None:
        self._state = LoadState.IDLE
        self.closed = False
        self.spec: LoadSpec | None = None
        made.append(self)

    def prepare(self, spec: LoadSpec, keepalive: Callable[[], None] = no_keepalive) -> Prepared:
        if spec.params.get("fail"):
            raise DriverError("auth", "cannot authenticate to h:1: WRONGPASS")
        keepalive()
        self.spec = spec
        self._state = LoadState.PREPARED
        return Prepared(processes=2, connections=8, driver="fake", driver_version="1",
                        interpreter="none")

    def start_at(self, t0_ns: int) -> None:
        if self._state is not LoadState.PREPARED:
            raise DriverError("state", "not prepared")
        self._state = LoadState.RUNNING

    @property
    def state(self) -> LoadState:
        return self._state

    def finish(self) -> None:
        self._state = LoadState.FINISHED

    def progress(self) -> Progress:
        return Progress(state=self._state)

    def stop(self) -> None:
        if self._state in (LoadState.PREPARED, LoadState.RUNNING):
            self._state = LoadState.STOPPED

    def report(self) -> LoadReport:
        if not self._state.done or self.spec is None:
            raise DriverError("state", "not over")
        return LoadReport(
            driver="fake",
            t0_ns=1,
            started_ns=1,
            start_spread_ns=0,
            stopped_ns=2,
            interval_ns=self.spec.timeline.interval_ns,
            warmup_intervals=0,
            measure_intervals=1,
            histogram=self.spec.histogram,
            processes=2,
            connections=8,
            intervals=(),
        )

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def made() -> list[FakeDriver]:
    """The drivers the controller made, in order."""
    return []


@pytest.fixture
def controller(made: list[FakeDriver]) -> LoadController:
    return LoadController({"fake": lambda: FakeDriver(made)})


def spec(**params: object) -> str:
    return json.dumps(dict(SPEC, params=params))


def test_a_whole_load(controller: LoadController, made: list[FakeDriver]) -> None:
    assert controller.progress().state is LoadState.IDLE
    kept_alive: list[int] = []
    prepared = controller.prepare(spec(), keepalive=lambda: kept_alive.append(1))
    assert prepared == Prepared(processes=2, connections=8, driver="fake", driver_version="1",
                                pipeline=None, interpreter="none")
    assert kept_alive == [1]
    assert controller.state is LoadState.PREPARED
    assert controller.start(123) == LoadStarted(t0_ns=123)
    assert controller.progress().state is LoadState.RUNNING
    with pytest.raises(DriverError, match="state: not over"):
        controller.report()
    made[0].finish()
    assert controller.report().driver == "fake"
    assert controller.stop() == LoadStopped(LoadState.FINISHED)  # over already: nothing to stop


def test_calls_out_of_order_are_state_errors(controller: LoadController) -> None:
    with pytest.raises(DriverError, match=r"^state: cannot start: no load is prepared$"):
        controller.start(1)
    with pytest.raises(DriverError, match=r"^state: cannot report: no load is prepared$"):
        controller.report()
    assert controller.stop() == LoadStopped(LoadState.IDLE)
    controller.prepare(spec())
    controller.start(1)
    with pytest.raises(DriverError, match="a load is running already; stop it"):
        controller.prepare(spec())


def test_a_new_prepare_replaces_a_load_that_is_over(
    controller: LoadController, made: list[FakeDriver]
) -> None:
    controller.prepare(spec())
    assert controller.stop() == LoadStopped(LoadState.STOPPED)
    controller.prepare(spec())
    first, second = made
    assert first.closed and not second.closed
    assert controller.state is LoadState.PREPARED
    controller.close()
    assert second.closed
    assert controller.state is LoadState.IDLE


def test_a_refused_prepare_leaves_the_controller_idle(controller: LoadController) -> None:
    with pytest.raises(DriverError) as refused:
        controller.prepare(spec(fail=True))
    assert (refused.value.kind, refused.value.message) == (
        "auth",
        "cannot authenticate to h:1: WRONGPASS",
    )
    assert controller.state is LoadState.IDLE
    controller.prepare(spec())  # and usable


def test_an_unknown_driver_or_a_bad_spec_is_a_config_error(
    controller: LoadController, made: list[FakeDriver]
) -> None:
    with pytest.raises(DriverError, match=r"^config: unknown driver 'memtier' \(known: fake\)$"):
        controller.prepare(json.dumps(dict(SPEC, driver="memtier")))
    with pytest.raises(DriverError, match=r"^config: spec\.timeline\.interval_ns must be at "):
        timeline = {"interval_ns": 0, "warmup_intervals": 0, "measure_intervals": 1}
        controller.prepare(json.dumps(dict(SPEC, timeline=timeline)))
    assert made == []


def test_a_driver_error_is_one_line() -> None:
    error = DriverError("server", "first line\n  second line ")
    assert error.message == "first line second line"
    assert str(error) == "server: first line second line"


class GatedDriver(FakeDriver):
    """A FakeDriver whose prepare waits for the test to open its gate (a long preload)."""

    def __init__(self, made: list[FakeDriver], gate: threading.Event) -> None:
        super().__init__(made)
        self.gate = gate

    def prepare(self, spec: LoadSpec, keepalive: Callable[[], None] = no_keepalive) -> Prepared:
        assert self.gate.wait(30), "the test never opened the gate"
        return super().prepare(spec, keepalive)


def test_a_background_preparation_answers_at_once_and_keeps_its_outcome(
    made: list[FakeDriver],
) -> None:
    gate = threading.Event()
    controller = LoadController({"fake": lambda: GatedDriver(made, gate)})
    assert controller.begin_prepare(spec()) == Progress(state=LoadState.PREPARING)
    assert controller.progress().state is LoadState.PREPARING
    with pytest.raises(DriverError, match=r"^state: the load is still being prepared$"):
        controller.prepared()
    with pytest.raises(DriverError, match=r"^state: a load is being prepared already$"):
        controller.begin_prepare(spec())
    gate.set()
    poll_until(lambda: controller.state is LoadState.PREPARED, 30, "the preparation to end")
    assert controller.prepared().processes == 2
    assert controller.prepared() == controller.prepared()  # asking again: the same answer


def test_a_failed_background_preparation_leaves_idle_with_its_kind_and_message(
    controller: LoadController,
) -> None:
    with pytest.raises(DriverError, match=r"^state: no load was prepared$"):
        controller.prepared()
    controller.begin_prepare(spec(fail=True))
    poll_until(lambda: controller.state is not LoadState.PREPARING, 30, "the failure")
    progress = controller.progress()
    assert (progress.state, progress.problem) == (
        LoadState.IDLE, "cannot authenticate to h:1: WRONGPASS")
    with pytest.raises(DriverError, match=r"^auth: cannot authenticate to h:1: WRONGPASS$"):
        controller.prepared()
    with pytest.raises(DriverError, match=r"^config: unknown driver"):  # checked at once
        controller.begin_prepare(json.dumps(dict(SPEC, driver="memtier")))
    controller.begin_prepare(spec())  # and usable
    poll_until(lambda: controller.state is LoadState.PREPARED, 30, "the preparation to end")
