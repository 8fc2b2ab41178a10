"""The standard files beside results.json read by other tools: each repetition's interval log
by HdrHistogram's own Java ``HistogramLogProcessor`` (Debian's libhdrhistogram-java) and by
the ``hdrhistogram`` package's log reader, ``summary.csv`` by the csv module. The document is
a real run's (tests/fixtures/results-v1.json). Not a lab test.

Totals are compared exactly; percentiles go through Java on both sides (the log, and a
one-line log of the histogram results.json stores), so the comparison does not depend on
which rank convention coord reads its own percentiles with.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from hdrh.log import HistogramLogReader

from coordinator.core.histograms import counts, decode_histogram
from coordinator.report.generate import write_standard_files
from coordinator.report.standard_files import LEGEND, hlog_name
from coordinator.results import load_results

FIXTURE = Path(__file__).parents[1] / "fixtures" / "results-v1.json"
JARS = ("/usr/share/java/hdrhistogram.jar",)
JAVA_TIMEOUT = 120.0


@pytest.fixture
def written(tmp_path: Path) -> Path:
    document = load_results(FIXTURE)
    write_standard_files(tmp_path, document)
    return tmp_path


def java_distribution(log: Path, out: Path, tag: str | None = None) -> str:
    """The total percentile distribution HistogramLogProcessor prints for ``log`` (µs)."""
    java = shutil.which("java")
    jar = next((jar for jar in JARS if Path(jar).is_file()), None)
    if java is None or jar is None:
        pytest.skip("HdrHistogram's Java HistogramLogProcessor is not installed (needs java and "
                    "libhdrhistogram-java: scripts/install-system-packages)")
    command = [java, "-cp", jar, "org.HdrHistogram.HistogramLogProcessor", "-i", str(log),
               "-o", str(out), "-outputValueUnitRatio", "1"]
    if tag is not None:
        command += ["-tag", tag]
    subprocess.run(command, check=True, timeout=JAVA_TIMEOUT, capture_output=True)
    return Path(f"{out}.hgrm").read_text()


def table(distribution: str) -> str:
    """The percentile table and its footer, without the header naming the log's StartTime."""
    return distribution[distribution.index("Value"):]


def one_line_log(path: Path, encoded: str) -> Path:
    path.write_text(f"{LEGEND}\n0.000,1.000,0.000,{encoded}\n")
    return path


def test_java_histogram_log_processor_reads_the_same_totals_and_percentiles(
        written: Path, tmp_path: Path) -> None:
    document = load_results(FIXTURE)
    for repetition in document.repetitions:
        log = written / hlog_name(repetition.index)
        for tag, encoded in [(None, repetition.histogram),
                             *((agent.host, agent.histogram) for agent in repetition.agents)]:
            name = f"{repetition.index}-{tag or 'all'}"
            from_log = java_distribution(log, tmp_path / f"log-{name}", tag)
            stored = java_distribution(one_line_log(tmp_path / f"{name}.hlog", encoded),
                                       tmp_path / f"stored-{name}")
            total = decode_histogram(encoded).total_count
            assert re.search(rf"Total count += +{total}]", from_log), (name, from_log[-200:])
            assert total > 0
            assert table(from_log) == table(stored), name


def test_the_hdrhistogram_package_reads_the_same_histograms(written: Path) -> None:
    document = load_results(FIXTURE)
    for repetition in document.repetitions:
        reader = HistogramLogReader(str(written / hlog_name(repetition.index)),
                                    decode_histogram(repetition.histogram))
        by_tag = defaultdict(list)
        while (histogram := reader.get_next_interval_histogram()) is not None:
            by_tag[histogram.get_tag()].append(histogram)
        reader.close()
        expected = {None: repetition.histogram,
                    **{agent.host: agent.histogram for agent in repetition.agents}}
        assert set(by_tag) == set(expected)
        for tag, encoded in expected.items():
            stored = decode_histogram(encoded)
            merged = decode_histogram(encoded)
            merged.reset()
            for histogram in by_tag[tag]:
                merged.add(histogram)
            assert len(by_tag[tag]) == repetition.window.intervals
            recorded = repetition if tag is None else next(
                agent for agent in repetition.agents if agent.host == tag)
            # replies beyond the histogram's range are counted but not in the histogram
            assert merged.total_count == stored.total_count == recorded.count - recorded.overflow
            assert counts(merged) == counts(stored), tag


def test_summary_csv_has_a_row_per_repetition_and_the_median(written: Path) -> None:
    document = load_results(FIXTURE)
    rows = list(csv.DictReader((written / "summary.csv").open()))
    assert [row["repetition"] for row in rows] == ["1", "2", "3", "median"]
    for row, repetition in zip(rows, document.repetitions, strict=False):
        assert float(row["ops_per_sec"]) == repetition.ops_per_sec
        assert int(row["p99_usec"]) == repetition.latency_usec.p99
        assert float(row["start_skew_usec"]) == repetition.start_skew_usec
    assert document.summary is not None
    assert float(rows[-1]["p99_usec"]) == document.summary.latency_usec.p99.median
    assert float(rows[-1]["ops_per_sec"]) == document.summary.ops_per_sec.median
