"""The scheduler's slice hint of the calling thread: a short slice for the wake-up at T0.

Linux (6.12 and later, EEVDF) takes ``sched_attr.sched_runtime`` of a normal (``SCHED_OTHER``)
thread as the length of slice it asks for (0.1 to 100 ms; 0: the default), no privilege
needed. A thread that asks for a shorter slice than the task running on its core preempts that
task as it wakes (the ``PREEMPT_SHORT`` scheduler feature) instead of waiting for the task's
slice to end, up to a few milliseconds on a busy host. A load process asks for
:data:`SHORT_SLICE_NS` while it waits for T0 and sends its first requests, then goes back to
the default for the load itself (``agent.drivers.kit.timed``; figures in docs/methodology.md).

Where the call does not exist (another OS or architecture, an older kernel that refuses it),
nothing changes: the hint is an optimisation, never a requirement.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from typing import Final

#: The slice a load process asks for around T0: the kernel's minimum.
SHORT_SLICE_NS: Final = 100_000
#: ``sched_runtime`` 0: the kernel's default slice.
DEFAULT_SLICE: Final = 0

#: SCHED_OTHER and SCHED_BATCH: the policies whose slice the hint sets.
_FAIR_POLICIES: Final = frozenset({0, 3})
_SYSCALLS: Final = {  # (sched_setattr, sched_getattr) by machine
    "x86_64": (314, 315),
    "aarch64": (274, 275),
}


class _SchedAttr(ctypes.Structure):
    """``struct sched_attr`` (its first version, 48 bytes)."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
    ]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or platform.machine() not in _SYSCALLS:
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC: Final = _libc()


def request_slice(runtime_ns: int) -> bool:
    """Ask for a slice of ``runtime_ns`` (:data:`DEFAULT_SLICE`: the default) for the calling
    thread, keeping its policy and nice value; whether the kernel accepted it. A thread that
    is not under a fair policy (normal or batch: someone chose real-time or idle for it) is
    left alone."""
    if _LIBC is None:
        return False
    try:
        policy = os.sched_getscheduler(0)
        nice = os.getpriority(os.PRIO_PROCESS, 0)
    except OSError:
        return False
    if policy not in _FAIR_POLICIES:
        return False
    attr = _SchedAttr(size=ctypes.sizeof(_SchedAttr), sched_policy=policy,
                      sched_nice=nice, sched_runtime=runtime_ns)
    setattr_call = _SYSCALLS[platform.machine()][0]
    return bool(_LIBC.syscall(setattr_call, 0, ctypes.byref(attr), 0) == 0)


def current_slice_ns() -> int | None:
    """The slice the calling thread runs with, ns (the kernel's default unless one was asked
    for); None where it cannot be read."""
    if _LIBC is None:
        return None
    attr = _SchedAttr()
    getattr_call = _SYSCALLS[platform.machine()][1]
    if _LIBC.syscall(getattr_call, 0, ctypes.byref(attr), ctypes.sizeof(_SchedAttr), 0) != 0:
        return None
    return int(attr.sched_runtime)
