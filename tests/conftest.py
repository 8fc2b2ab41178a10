"""Shared test helpers: run the real `coord` entry point in-process and capture what it says."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from signal import SIGINT, SIGTERM

import pytest
from hypothesis import settings

from coordinator.cli import main

# No deadline on hypothesis examples: a deadline is a timed assertion, and these machines are
# shared and noisy (an example that took 60 ms once took 309 ms on a busy core).
settings.register_profile("coord", deadline=None)
settings.load_profile("coord")


@dataclass(frozen=True)
class CoordResult:
    status: int
    stdout: str
    stderr: str


RunCoord = Callable[..., CoordResult]


@pytest.fixture
def run_coord(capsys: pytest.CaptureFixture[str]) -> RunCoord:
    """Call `coord ARGS...` in this process; return exit status and output."""

    def run(*args: str) -> CoordResult:
        capsys.readouterr()
        handlers = {signum: signal.getsignal(signum) for signum in (SIGINT, SIGTERM)}
        try:
            main(list(args))
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        else:
            status = 0
        finally:  # main() sets process-wide signal handlers: give pytest its own back
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        captured = capsys.readouterr()
        return CoordResult(status, captured.out, captured.err)

    return run
