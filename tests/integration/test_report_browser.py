"""The HTML report of a real run (rootless: real agents over a local transport, a real Redis on
loopback, as in test_local_run) opened in a real headless Chromium with the network cut off:
every plot renders, the console stays silent, no request leaves the page. Not a lab test.

Chromium runs with a dead proxy and a resolver that finds no host, and records its network log:
the page's own requests (those whose isolation key is the file:// page) must all be local
(file:, data:, blob:). The browser's background traffic (update checks) is not the page's.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from coordinator.inventory.loader import load_inventory
from coordinator.report.generate import write_report
from coordinator.run.runner import run_benchmark
from tests.helpers import MeasureView
from tests.integration.test_local_run import (  # noqa: F401 - fixtures used by name
    redis_port,
    transport,
    write_inventory,
)
from tests.local_transport import LocalTransport

BROWSER_TIMEOUT = 180.0
LOCAL_SCHEMES = ("file:", "data:", "blob:")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (scripts/install-system-packages installs it)")
    return found


def open_offline(page: Path, workdir: Path) -> tuple[str, str, list[str]]:
    """Load ``page`` in headless Chromium cut off from the network, let its scripts run, and
    return the DOM after them, Chromium's log and the URLs the page itself requested. A
    screenshot is left in ``workdir/report.png``."""
    net_log = workdir / "net-log.json"
    flags = [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
             "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
             "--virtual-time-budget=60000", "--enable-logging=stderr", "--v=0",
             f"--user-data-dir={workdir / 'profile'}", f"--log-net-log={net_log}",
             "--window-size=1280,6000"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=BROWSER_TIMEOUT, check=True)
    subprocess.run([*flags, f"--screenshot={workdir / 'report.png'}", page.as_uri()],
                   capture_output=True, timeout=BROWSER_TIMEOUT, check=True)
    return dom.stdout, dom.stderr, page_requests(net_log)


def page_requests(net_log: Path) -> list[str]:
    """The URLs requested on behalf of a file:// page, from Chromium's network log."""
    events = json.loads(net_log.read_text())["events"]
    return sorted({event["params"]["url"] for event in events
                   if "url" in event.get("params", {})
                   and "file://" in str(event["params"].get("network_isolation_key", ""))})


def test_the_report_of_a_real_run_renders_every_plot_offline_without_console_errors(
        tmp_path: Path, redis_port: int, transport: LocalTransport,  # noqa: F811
) -> None:
    loaded = load_inventory(write_inventory(tmp_path, redis_port, repetitions=3))
    command = ["coord", "run", "-i", "local.yaml", "--set", "servers[0].password=hunter2"]
    outcome = run_benchmark(loaded, tmp_path / "out", MeasureView(), transport=transport,
                            command_line=command)
    stored = json.loads((outcome.directory / "results.json").read_text())
    assert stored["command_line"] == [*command[:-1], "servers[0].password=***"]
    report = write_report(outcome.directory, "coord report (test)")
    commands = {name for r in outcome.document.repetitions for name in r.commands}
    with_metrics = [r for r in outcome.document.repetitions if r.metrics]
    assert len(with_metrics) == 3
    # the spectra, then per repetition its over-time plot and its host CPU plot
    expected_plots = 1 + (len(commands) if len(commands) > 1 else 0) + 3 + 3

    dom, log, requests = open_offline(report, tmp_path)

    print(f"report: {report} ({report.stat().st_size} bytes); "
          f"screenshot: {tmp_path / 'report.png'}")
    assert f'data-plots-rendered="{expected_plots}"' in dom
    assert len(re.findall(r'class="[^"]*js-plotly-plot', dom)) == expected_plots
    assert len(re.findall(r'<svg class="main-svg"', dom)) >= expected_plots
    assert [line for line in log.splitlines() if ":CONSOLE" in line] == []
    assert [url for url in requests if not url.startswith(LOCAL_SCHEMES)] == []
    assert (tmp_path / "report.png").stat().st_size > 0
    for name in ("summary.csv", "rep-1.hlog", "rep-3.hlog"):
        assert (outcome.directory / name).is_file()
