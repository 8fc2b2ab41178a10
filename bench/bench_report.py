"""Report generation for 3 repetitions x 20 clients x 300 intervals. Targets (issue 14):
report.html generated in under 5 s and under 5 MB.

The document is synthetic but built through the real models: per client and interval a
histogram of a log-normal latency profile (each client its own median, 80 µs..2 ms, with a slow
tail), two commands (GET, SET), 10 warm-up intervals then 290 measured, merged by
``repetition_figures`` into repetitions and summarised as a run does. Timed, in the same
process: building the report's data (``report_data``), rendering the HTML (``render_html``),
and ``write_report`` as ``coord run`` calls it (the standard files included). The first
render pays once for packing plotly.js (gzip); it is reported apart.

    .venv/bin/python bench/bench_report.py [--clients 20] [--intervals 300] [--repetitions 3]

Needs no lab and no root; results on stdout, progress (``#``) on stderr.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lab import header, ms, note, table, verdict

from coordinator.core.figures import Repetition, SummaryRecord
from coordinator.core.histograms import HISTOGRAM_PARAMS
from coordinator.core.reports import AgentReport, CommandSample, Interval
from coordinator.core.stats import repetition_figures
from coordinator.inventory.loader import load_inventory
from coordinator.report.data import report_data
from coordinator.report.generate import write_report
from coordinator.report.html import packed_plotly, render_html
from coordinator.results.io import ResultsWriter
from coordinator.results.model import new_document

INVENTORY = Path(__file__).resolve().parents[1] / "inventory" / "two-clients.yaml"
WARMUP_INTERVALS = 10
TARGET_S = 5.0
TARGET_BYTES = 5_000_000


def histogram(rng: random.Random, median_usec: float, values: int) -> CommandSample:
    """About ``values`` latencies of a log-normal profile with a 20x slower 1 % tail."""
    h = HISTOGRAM_PARAMS.empty()
    for _ in range(40):
        centre = median_usec * (20 if rng.random() < 0.01 else 1)
        value = int(min(math.exp(rng.gauss(math.log(centre), 0.5)), 59_000_000)) + 1
        h.record_value(value, max(values // 40, 1))
    return CommandSample.of(h)


def agent_report(rng: random.Random, host: str, intervals: int) -> AgentReport:
    median = rng.uniform(80, 2000)
    items = []
    for index in range(intervals):
        commands = {"GET": histogram(rng, median, 900), "SET": histogram(rng, median * 1.2, 100)}
        count = sum(sample.count for sample in commands.values())
        items.append(Interval(index=index, phase="warmup" if index < WARMUP_INTERVALS else
                              "measure", complete=True, commands=commands, requests=count,
                              errors={}, bytes_sent=30 * count, bytes_received=40 * count,
                              overflow=0))
    return AgentReport(host=host, driver="builtin", t0_ns=0, started_ns=0, start_spread_ns=0,
                       stopped_ns=0, interval_ns=1_000_000_000,
                       warmup_intervals=WARMUP_INTERVALS,
                       measure_intervals=intervals - WARMUP_INTERVALS, params=HISTOGRAM_PARAMS,
                       processes=1, connections=50, intervals=tuple(items), errors={})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--intervals", type=int, default=300)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)  # noqa: S311 - synthetic latencies, not secrets
    header(f"report generation: {args.repetitions} repetitions x {args.clients} clients x "
           f"{args.intervals} intervals")
    document = new_document(load_inventory(INVENTORY).inventory, [])
    done: list[Repetition] = []
    started = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for index in range(1, args.repetitions + 1):
        note(f"building repetition {index}")
        reports = [agent_report(rng, f"client{c}", args.intervals) for c in range(args.clients)]
        window = list(range(WARMUP_INTERVALS, args.intervals))
        done.append(repetition_figures(reports, window, index=index,
                                       started=started + timedelta(minutes=10 * index)))
        document = document.with_repetition(done[-1], SummaryRecord.of(done))
    document = document.finish("complete")

    start = time.perf_counter()
    packed_plotly()
    pack_s = time.perf_counter() - start
    start = time.perf_counter()
    data = report_data(document)
    data_s = time.perf_counter() - start
    start = time.perf_counter()
    page = render_html(data, "bench")
    render_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as directory:
        writer = ResultsWriter(Path(directory) / "run")
        results_bytes = writer.write(document).stat().st_size
        start = time.perf_counter()
        report = write_report(writer.directory, "bench", document)
        write_s = time.perf_counter() - start
        size = report.stat().st_size
        others = sum(p.stat().st_size for p in writer.directory.iterdir()
                     if p.name not in ("report.html", "results.json"))
    plotly_bytes = len(packed_plotly())
    table(["step", "time"], [
        ["pack plotly.js (once per process)", ms(pack_s)],
        ["report data (spectra, series, tables)", ms(data_s)],
        ["render HTML", ms(render_s)],
        ["write_report (data + HTML + summary.csv + hlogs)", ms(write_s)],
    ])
    table(["file", "bytes"], [
        ["report.html", f"{size:,}"], ["  of which plotly.js (gzip, base64)", f"{plotly_bytes:,}"],
        ["  of which the run's data and page", f"{len(page) - plotly_bytes:,}"],
        ["results.json", f"{results_bytes:,}"], ["summary.csv + rep-*.hlog", f"{others:,}"],
    ])
    total_s = pack_s + write_s
    verdict("report generation (first, plotly packing included)", ms(total_s), f"< {TARGET_S} s",
            total_s < TARGET_S)
    verdict("report.html size", f"{size / 1e6:.2f} MB", "< 5 MB", size < TARGET_BYTES)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
