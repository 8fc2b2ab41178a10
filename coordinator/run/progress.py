"""Terminal views of work spread over hosts: a live per-host table and a failure table.

The library reports through the :class:`~coordinator.remote.fanout.ProgressView` protocol; these are
the views the CLI passes in. Nothing else in coord prints.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

from coordinator.core.errors import HostError
from coordinator.doctor.verdicts import Finding
from coordinator.remote.fanout import HostFailure
from coordinator.remote.leftovers import HeldAgent
from coordinator.remote.operations import AgentRow


class LiveHostTable:
    """A live table: one row per host with its stage, detail and time in the current work."""

    def __init__(self, console: Console, hosts: list[str], title: str) -> None:
        self._console = console
        self._title = title
        self._rows: dict[str, tuple[str, str, float, str]] = {
            host: ("waiting", "", time.monotonic(), "") for host in hosts
        }
        self._lock = threading.Lock()
        self._live = Live(self._render(), console=console, refresh_per_second=8,
                          transient=not console.is_terminal)

    def __enter__(self) -> LiveHostTable:
        self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._live.update(self._render())
        self._live.__exit__(kind, value, traceback)
        if not self._console.is_terminal:
            self._console.print(self._render())

    def stage(self, host: str, stage: str, detail: str = "") -> None:
        """Show ``host`` entering ``stage``."""
        with self._lock:
            _, _, started, _ = self._rows.get(host, ("", "", time.monotonic(), ""))
            self._rows[host] = (stage, detail, started, "")
        self._live.update(self._render())

    def failed(self, host: str, stage: str, error: HostError) -> None:
        """Show ``host`` as failed in ``stage``."""
        with self._lock:
            _, _, started, _ = self._rows[host]
            self._rows[host] = (f"failed ({stage})", error.reason, started,
                                f"{time.monotonic() - started:.2f}s")
        self._live.update(self._render())

    def done(self, host: str, detail: str = "") -> None:
        """Show ``host`` as finished."""
        with self._lock:
            _, previous, started, _ = self._rows[host]
            self._rows[host] = ("ready", detail or previous, started,
                                f"{time.monotonic() - started:.2f}s")
        self._live.update(self._render())

    def _render(self) -> Table:
        table = Table(title=self._title, title_justify="left")
        for column in ("host", "stage", "detail", "time"):
            table.add_column(column)
        now = time.monotonic()
        for host, (stage, detail, started, final) in sorted(self._rows.items()):
            style = "red" if stage.startswith("failed") else ("green" if stage == "ready" else "")
            elapsed = final or f"{now - started:.1f}s"
            table.add_row(host, stage, detail, elapsed, style=style)
        return table


def failure_table(failures: dict[str, HostFailure]) -> Table:
    """Every failed host with the stage it failed in and the one-line reason."""
    table = Table(title="failed hosts", title_justify="left", title_style="red")
    for column in ("host", "stage", "reason"):
        table.add_column(column)
    for host, failure in sorted(failures.items()):
        table.add_row(host, failure.stage, failure.error.reason)
    return table


def agents_table(rows: dict[str, AgentRow], title: str) -> Table:
    """Per agent: host, Python, bundle, what the upload did, pid, clock offset, RTT, state."""
    table = Table(title=title, title_justify="left")
    for column in ("host", "python", "bundle", "upload", "pid", "uptime", "clock offset",
                   "rtt", "agent cpu"):
        table.add_column(column)
    for name, row in sorted(rows.items()):
        session = row.session
        deployment = session.deployment
        upload = ("local" if deployment is None else "cached" if deployment.result.cached
                  else f"{deployment.result.bytes_uploaded / 1024:.0f} KiB")
        clock = session.clock
        status = row.status
        table.add_row(
            name,
            session.info.python,
            deployment.bundle.hash[:12] if deployment else "(checkout)",
            upload,
            str(session.info.pid),
            f"{status.uptime_s:.1f}s" if status else "?",
            f"{clock.offset_ns / 1e6:+.3f} ± {clock.uncertainty_ns / 1e6:.3f} ms",
            f"{clock.rtt_ns / 1e6:.3f} ms",
            f"{status.cpu_s:.2f}s" if status else "no answer",
        )
    return table


def held_agents_table(rows: dict[str, HeldAgent | None], title: str) -> Table:
    """Per host: the agent another coord process holds (pid, port, bundle, uptime, memory)."""
    table = Table(title=title, title_justify="left")
    for column in ("host", "agent", "pid", "port", "bundle", "uptime", "rss"):
        table.add_column(column)
    for name, held in sorted(rows.items()):
        if held is None:
            table.add_row(name, "none", "", "", "", "", "")
            continue
        table.add_row(name, "held", str(held.pid), str(held.port),
                      (held.bundle_hash or "?")[:12], f"{held.uptime_s:.1f}s",
                      f"{held.rss_bytes / 2**20:.1f} MiB")
    return table


def findings_table(findings: list[Finding]) -> Table:
    """`coord doctor`'s problems: one line each, with its fix."""
    table = Table(title=f"{len(findings)} problem(s)", title_justify="left", title_style="red")
    for column in ("host", "check", "problem", "fix"):
        table.add_column(column)
    for finding in findings:
        table.add_row(finding.host, finding.check, finding.problem, finding.fix)
    return table
