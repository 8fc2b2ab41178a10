"""The sweep's HTML report of a real sweep (rootless: real agents over a local transport, a real
Redis on loopback, as in test_local_run; 2 cells of 1 repetition, a price per hour and a p99
bound) opened in a real headless Chromium cut off from the network, as the run report's test
does: every plot renders, the console stays silent, no request leaves the page. Not a lab
test."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from coordinator.sweep.analysis import summarise
from coordinator.sweep.executor import run_sweep
from coordinator.sweep.html import write_sweep_html
from coordinator.sweep.load import load_sweep
from coordinator.sweep.plots import price_figure
from coordinator.sweep.table import SweepConsoleView
from tests.integration.test_local_run import (  # noqa: F401 - fixtures used by name
    redis_port,
    transport,
    write_inventory,
)
from tests.integration.test_report_browser import LOCAL_SCHEMES, open_offline
from tests.local_transport import LocalTransport


def write_plan(directory: Path, inventory: Path) -> Path:
    plan = directory / "plan.yaml"
    plan.write_text(f"""\
version: 1
name: local-sweep
inventories:
  - name: local
    file: {inventory}
    labels: {{instance_type: loopback}}
    price_per_hour: 0.1
matrix:
  benchmark.builtin.connections: [1, 4]
report:
  p99_bound: 100ms
""")
    return plan


def test_the_sweep_report_of_a_real_sweep_renders_every_plot_offline(
        tmp_path: Path, redis_port: int, transport: LocalTransport,  # noqa: F811
) -> None:
    loaded = load_sweep(write_plan(tmp_path, write_inventory(tmp_path, redis_port)))
    outcome = run_sweep(loaded, tmp_path / "sweep", SweepConsoleView(Console(stderr=True)),
                        transport=transport)
    assert [cell.status for cell in outcome.index.cells] == ["complete", "complete"]
    page = write_sweep_html(outcome.directory, outcome.index, loaded.plan.report.p99_bound,
                            "coord sweep (test)")
    # per cell and the curves; ops/s per price too when a cell is clean (on a busy machine a
    # cell may be flagged, skewed-start say, and a flagged cell is never priced)
    summary = summarise(outcome.index, loaded.plan.report.p99_bound)
    expected_plots = 2 + (price_figure(summary) is not None)
    assert page.read_text().count('<div class="plot"') == expected_plots

    browser = tmp_path / "browser"
    browser.mkdir()
    dom, log, requests = open_offline(page, browser)

    print(f"sweep report: {page} ({page.stat().st_size} bytes); "
          f"screenshot: {browser / 'report.png'}")
    assert f'data-plots-rendered="{expected_plots}"' in dom
    assert len(re.findall(r'class="[^"]*js-plotly-plot', dom)) == expected_plots
    assert len(re.findall(r'<svg class="main-svg"', dom)) >= expected_plots
    assert [line for line in log.splitlines() if ":CONSOLE" in line] == []
    assert [url for url in requests if not url.startswith(LOCAL_SCHEMES)] == []
    assert (browser / "report.png").stat().st_size > 0
