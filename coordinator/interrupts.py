"""Ctrl-C and SIGTERM as one ``KeyboardInterrupt``, raised where coord's handlers can see it.

The first SIGINT or SIGTERM raises ``KeyboardInterrupt`` in the main thread; the ones after it
are ignored, so that no signal breaks into the clean-up (stopping agents, writing results),
which is bounded by its own deadlines. Python handlers rather than ``SIG_IGN``: programs coord
starts later get the default handling back.

Two places the interrupt must not be raised, so a signal that arrives while a frame of either is
on the stack is delivered again a moment later, once the call has returned:

* inside a call into pydantic. pydantic-core calls back into Python to serialize some fields (a
  duration's text, a document's wrap serializer) and wraps whatever such a callback raises:
  ``model_dump`` raises ``PydanticSerializationError`` with the interrupt as its cause,
  ``model_dump_json`` one with no trace of it at all. A Ctrl-C that landed there ended a run or
  a sweep with a traceback instead of as interrupted (serializing a document takes
  milliseconds);
* inside paramiko. Its locks are taken with ``acquire()`` and released in a ``finally`` that an
  exception raised between the two, or inside ``Condition.wait``'s re-acquire, skips or runs
  unowned. A Ctrl-C that landed in a channel's read (the agent's answer arriving over SSH) left
  the channel's buffer lock held, and closing that channel, as the clean-up does, then waited
  for it forever: `coord baseline` hung after Ctrl-C. The main thread's waits for an agent are
  in rpyc's poll, not in paramiko, so the delay is that of one read or write.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Final

import paramiko
import pydantic
import pydantic_core

SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
REDELIVERY_DELAY_S: Final = 0.01
"""How long a signal that landed inside pydantic or paramiko waits before it is delivered
again."""
_UNINTERRUPTIBLE_PACKAGES: Final = tuple(
    str(Path(package.__file__).parent) + os.sep
    for package in (pydantic, pydantic_core, paramiko) if package.__file__ is not None)


def install() -> None:
    """Interrupt on the first SIGINT or SIGTERM, ignore the ones after it."""
    for signum in SIGNALS:
        signal.signal(signum, interrupt_once)


def ignore_all() -> None:
    """Ignore both signals for good: only exiting is left to do.

    Python's own finalization would restore the default handlers (a late SIGTERM would then
    kill coord: status 143, not its own), and a ``KeyboardInterrupt`` while it joins threads
    prints a traceback; it leaves ``SIG_IGN`` alone.
    """
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def interrupt_once(signum: int, frame: FrameType | None) -> None:
    """The signal handler: ``KeyboardInterrupt`` the first time, unless pydantic or paramiko is
    running (then the signal comes again after :data:`REDELIVERY_DELAY_S`)."""
    if inside_uninterruptible_call(frame):
        redeliver = threading.Timer(REDELIVERY_DELAY_S, os.kill, (os.getpid(), signum))
        redeliver.daemon = True
        redeliver.start()
        return
    for each in SIGNALS:
        signal.signal(each, _already_stopping)
    raise KeyboardInterrupt


def inside_uninterruptible_call(frame: FrameType | None) -> bool:
    """Whether a frame of pydantic or paramiko is on the stack of ``frame``: a callback of
    pydantic's serializer runs above one (a ``model_dump`` frame called pydantic-core, which
    called the callback), a wait inside paramiko below its caller's."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(_UNINTERRUPTIBLE_PACKAGES):
            return True
        frame = frame.f_back
    return False


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    """A signal during clean-up: already stopping."""
