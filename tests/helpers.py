"""Waits shared by the integration tests: each one is bounded by a deadline, so none can hang."""

from __future__ import annotations

import os
import select
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TypeVar

import psutil
import pytest
import redis

from agent.messages import LoadProgress
from agent.metrics.model import MetricsInterval
from coordinator.core.baselines import BaselinePair
from coordinator.inventory.loader import load_inventory
from coordinator.inventory.server_auth import target_password
from coordinator.lab.api import LabBusy, LabSpec, LabStatus, lab_down, lab_up
from coordinator.remote.fanout import NoProgress, ProgressView
from coordinator.results import Repetition

POLL_TICK = 0.02
T = TypeVar("T")


def poll_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds.

    Other processes and threads give no signal to wait on, and a fixed sleep is either slow or
    flaky.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_TICK)


def loopback_redis(directory: Path, password: str | None = None,
                   timeout: float = 60.0) -> Iterator[int]:
    """A redis-server on a free loopback port (no persistence, data in ``directory``) until
    the generator is closed; its port. For the rootless tests that need no lab."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    auth = ["--requirepass", password] if password is not None else []
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory), *auth],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, password=password)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        poll_until(answers, timeout, "redis-server to answer PING")
        yield port
    finally:
        client.close()
        server.terminate()
        server.wait(timeout)


def process_gone(pid: int) -> bool:
    """No such process, or a zombie (this sandbox's init does not reap orphans)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def when_lab_is_free(action: Callable[[], T], timeout: float = 300.0) -> T:
    """Run a lab command, waiting while another one (another test session) holds the lock."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except LabBusy:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def module_lab(spec: LabSpec, directory: Path) -> Iterator[LabStatus]:
    """The body of a module-scoped ``lab`` fixture (``yield from``): the lab ``spec`` with its
    inventory in ``directory``, built when the lab lock is free and always removed."""
    inventory = directory / "hosts.yaml"
    try:
        yield when_lab_is_free(lambda: lab_up(spec, inventory))
    finally:
        when_lab_is_free(lambda: lab_down(spec.name, spec.state_root))


def lab_redis(lab: LabStatus) -> redis.Redis:
    """A client of the lab's Redis from the root namespace (through the lab bridge), with the
    password the lab's inventory points at: the lab's Redis refuses anyone without it."""
    address = next(host.address for host in lab.hosts if host.role == "server")
    password = target_password(load_inventory(lab.inventory_path).inventory)
    return redis.Redis(host=address, port=6379, password=password, socket_timeout=10)


def emptied_lab_redis(lab: LabStatus) -> Iterator[redis.Redis]:
    """The body of a ``server`` fixture (``yield from``): the lab's Redis, emptied before the
    test and after it."""
    client = lab_redis(lab)
    client.flushall()
    try:
        yield client
        client.flushall()
    finally:
        client.close()


def wait_for_line(stream: IO[str] | None, needle: str, timeout: float) -> list[str]:
    """Read a child's pipe until a line contains ``needle``; return the lines read.

    A bare ``readline`` would block for good on a silent child: the selector bounds each read.
    """
    if stream is None:
        pytest.fail("the process has no pipe to read")
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=0.2):
                line = stream.readline()
                if not line:
                    break
                seen.append(line)
                if needle in line:
                    return seen
    pytest.fail(f"never saw {needle!r}; got {seen}")


def read_fd_line(fd: int, timeout: float) -> bytes:
    """One line from a raw pipe (an agent's stdout), byte by byte so nothing past it is
    consumed; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"no line from the agent within {timeout:g} s (got {data!r})")
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            chunk = os.read(fd, 1)
            if not chunk:
                break
            data += chunk
    return data


class MeasureView:
    """A run view for tests: records the repetitions and the last interval each host sampled
    (``sampled``, as the live view gets it), signals (``measuring``) once every client is in
    the measure phase, and calls ``on_measure`` the first time it is."""

    def __init__(self, on_measure: Callable[[], object] | None = None) -> None:
        self.on_measure = on_measure
        self.measuring = threading.Event()
        self.repetitions: list[Repetition] = []
        self.baseline_pairs: list[tuple[str, BaselinePair]] = []
        self.sampled: dict[str, MetricsInterval] = {}

    def deploying(self) -> ProgressView:
        return NoProgress()

    def repetition(self, index: int, total: int) -> None:
        self.measuring.clear()

    def progress(self, elapsed_s: float, total_s: float, clients: dict[str, LoadProgress],
                 hosts: Mapping[str, MetricsInterval]) -> None:
        self.sampled.update(hosts)
        if clients and all(p.phase == "measure" for p in clients.values()):
            first = not self.measuring.is_set()
            self.measuring.set()
            if first and self.on_measure is not None:
                self.on_measure()

    def repetition_done(self, repetition: Repetition) -> None:
        self.repetitions.append(repetition)

    def baseline_pair(self, when: str, pair: BaselinePair) -> None:
        self.baseline_pairs.append((when, pair))
