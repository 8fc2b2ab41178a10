"""The signal handling of `coord`: the first SIGINT or SIGTERM interrupts, later ones are
ignored, and a signal that lands inside a pydantic serializer's callback interrupts once the
call has returned instead of being wrapped into a serialization error; one that lands inside
paramiko, once paramiko's call has returned, its locks released."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Annotated

import pytest
from paramiko.buffered_pipe import BufferedPipe, PipeTimeout
from pydantic import BaseModel, PlainSerializer

from coordinator import interrupts

DEADLINE_S = 10.0


@pytest.fixture
def coord_handlers() -> Iterator[None]:
    """coord's handlers for the test, pytest's own back after it."""
    previous = {signum: signal.getsignal(signum) for signum in interrupts.SIGNALS}
    interrupts.install()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _signal_self(value: int) -> str:
    """A serializer callback in which a Ctrl-C lands: the handler runs inside it."""
    os.kill(os.getpid(), signal.SIGINT)
    return f"{value} s"


class Timed(BaseModel):
    seconds: Annotated[int, PlainSerializer(_signal_self, return_type=str)]


def wait_for_the_interrupt() -> None:
    """Poll until the redelivered signal raises; fail after the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        time.sleep(0.001)
    pytest.fail(f"no KeyboardInterrupt within {DEADLINE_S:g} s")


@pytest.mark.usefixtures("coord_handlers")
def test_the_first_signal_interrupts_and_later_ones_never_break_into_the_clean_up() -> None:
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGTERM)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
        signal.raise_signal(signum)  # during the clean-up: ignored


@pytest.mark.usefixtures("coord_handlers")
@pytest.mark.parametrize("dump", ["model_dump", "model_dump_json"])
def test_a_signal_inside_a_serializer_callback_interrupts_after_the_call_returns(
        dump: str) -> None:
    dumped: object = None
    with pytest.raises(KeyboardInterrupt):
        dumped = getattr(Timed(seconds=3), dump)()
        wait_for_the_interrupt()
    assert dumped in ({"seconds": "3 s"}, '{"seconds":"3 s"}')
    signal.raise_signal(signal.SIGINT)  # the redelivered one was the first: this is ignored


def test_a_frame_called_back_from_pydantic_core_has_a_pydantic_frame_below_it() -> None:
    seen: list[bool] = []

    def record(value: int) -> int:
        seen.append(interrupts.inside_uninterruptible_call(sys._getframe()))
        return value

    class Recorded(BaseModel):
        value: Annotated[int, PlainSerializer(record, return_type=int)]

    Recorded(value=1).model_dump()
    assert seen == [True]
    assert not interrupts.inside_uninterruptible_call(sys._getframe())


@pytest.mark.usefixtures("coord_handlers")
def test_a_signal_inside_a_paramiko_read_interrupts_after_the_read_returns() -> None:
    """A Ctrl-C during a read of an SSH channel's buffer (an agent's answer awaited) lets the
    read end as it would have, here by its own timeout, and leaves its lock free: raised inside
    the read's wait, the interrupt left paramiko's locks inconsistent, and the clean-up hung."""
    pipe = BufferedPipe()  # type: ignore[var-annotated]
    signaller = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
    outcome = "interrupted inside the read"
    signaller.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            try:
                pipe.read(16, timeout=0.5)
            except PipeTimeout:
                outcome = "timed out"
            wait_for_the_interrupt()
    finally:
        signaller.cancel()
    assert outcome == "timed out"
    assert pipe._lock.acquire(blocking=False)
