"""The host's run lock (agent.runlock) between real processes on a real file: who holds it is
named, --force goes on, and the kernel releases it when its holder dies. No lab needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.drivers.errors import DriverError
from agent.runlock import Holder, RunLock, lock_path
from tests.helpers import poll_until, process_gone, wait_for_line

HOLDER = Holder(operator="ana@lab", coordinator_pid=1234, since="2026-11-28 21:40:03 UTC")
ME = Holder(operator="bob@desk", coordinator_pid=5678, since="2026-11-28 21:41:00 UTC")
TAKE = (
    "import sys; from pathlib import Path; from agent.runlock import Holder, RunLock; "
    "lock = RunLock(Path(sys.argv[1])); "
    "print(lock.take(Holder('ana@lab', 1234, '2026-11-28 21:40:03 UTC'), force=False), "
    "flush=True); sys.stdin.read()"
)
SQUAT = (
    "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
    "print('squatting', flush=True); sys.stdin.read()"
)


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def start(started: list[subprocess.Popen[str]], program: str, path: Path,
          ready: str) -> subprocess.Popen[str]:  # fmt: skip
    process = subprocess.Popen([sys.executable, "-c", program, str(path)], text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    started.append(process)
    wait_for_line(process.stdout, ready, timeout=30)
    return process


def test_a_second_taker_is_refused_naming_the_run_then_takes_it_once_the_holder_died(
    tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "coord-run.lock"
    holder = start(spawn, TAKE, path, "None")
    lock = RunLock(path)
    with pytest.raises(DriverError) as refused:
        lock.take(ME, force=False)
    assert refused.value.kind == "busy"
    assert refused.value.message == (
        "this host is held by the coord run of ana@lab (pid 1234) since 2026-11-28 21:40:03 "
        "UTC; pass --force to run anyway"
    )
    assert lock.take(ME, force=True) == (
        "held by the coord run of ana@lab (pid 1234) since 2026-11-28 21:40:03 UTC"
    )
    assert not lock.held
    assert oct(path.stat().st_mode & 0o777) == "0o666"  # any user's agent can describe itself
    holder.send_signal(signal.SIGKILL)  # no clean-up: the kernel releases the lock
    holder.wait()
    poll_until(lambda: process_gone(holder.pid), 10, "the holder to die")
    assert lock.take(ME, force=False) is None
    assert lock.held
    assert f'"agent_pid": {os.getpid()}' in path.read_text()
    assert lock.take(ME, force=False) is None  # taken already: nothing to do
    lock.close()


def test_a_process_that_is_not_an_agent_is_named_by_the_kernel(
    tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "coord-run.lock"
    path.write_text('{"operator": "someone@else", "coordinator_pid": 1, "since": "x", '
                    '"agent_pid": 1}\n')  # a lie: pid 1 does not hold it  # fmt: skip
    squatter = start(spawn, SQUAT, path, "squatting")
    with pytest.raises(DriverError) as refused:
        RunLock(path).take(ME, force=False)
    assert refused.value.message.startswith(
        f"this host is held by process {squatter.pid} (python"
    )
    assert " of user root since 20" in refused.value.message
    assert refused.value.message.endswith(", not a coord agent; pass --force to run anyway")


@pytest.mark.parametrize("kind", ["directory", "symlink"])
def test_a_lock_file_nobody_can_use_is_refused_naming_its_owner(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "coord-run.lock"
    if kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(tmp_path / "elsewhere")
    lock = RunLock(path)
    with pytest.raises(DriverError) as refused:
        lock.take(ME, force=False)
    assert refused.value.message.startswith(f"this host is locked out: its run lock {path} "
                                            "cannot be opened (")  # fmt: skip
    assert "; owned by root, " in refused.value.message
    assert lock.take(ME, force=True) is not None


def test_the_lock_file_is_the_hosts_not_the_users() -> None:
    path = lock_path()
    assert path.parent in (Path("/run/lock"), Path("/tmp"))
    assert path.name == f"coord-run-{Path('/proc/self/ns/net').stat().st_ino}.lock"
