"""A neighbour on the benchmark's machine: sleeps 1 ms at a time and records how late each
wake-up was, so a benchmark can tell how much its processes starved the others.

Run as ``python bench/_neighbour.py OUT``: until SIGTERM, then writes ``OUT``: one line per
wake-up, ``WALL_NS LATE_NS`` (the wall clock at the wake-up, how much later than asked).
"""

from __future__ import annotations

import ctypes
import signal
import sys
import time
from array import array
from pathlib import Path
from types import FrameType

PR_SET_TIMERSLACK = 29


def main() -> int:
    ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    walls, lates = array("q"), array("q")
    running = True

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    while running:
        asked = time.time_ns() + 1_000_000
        time.sleep(0.001)
        now = time.time_ns()
        walls.append(now)
        lates.append(max(0, now - asked))
    with Path(sys.argv[1]).open("w") as out:
        out.writelines(f"{wall} {late}\n" for wall, late in zip(walls, lates, strict=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
