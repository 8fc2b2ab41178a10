"""The report's data extraction (pure), its renderers and `coord report` on good and bad
directories, from a real run's document (tests/fixtures/results-v1.json)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator import cli
from coordinator.core.histograms import decode_histogram
from coordinator.report import data
from coordinator.report import html as html_module
from coordinator.report.html import _json, render_html
from coordinator.results import Evidence, Verdict, load_results
from coordinator.run.runner import RunOutcome
from tests.conftest import RunCoord

FIXTURE = Path(__file__).parents[1] / "fixtures" / "results-v1.json"


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "run"
    directory.mkdir()
    shutil.copy(FIXTURE, directory / "results.json")
    return directory


def verdict(name: str, state: str, repetition: int | None = None) -> Verdict:
    return Verdict(name=name, state=state, repetitions=[] if repetition is None else [repetition],
                   hosts=[], summary=f"{name} is {state}",
                   evidence=[Evidence(metric="m", host="client1", intervals=[3], value=1.0,
                                      threshold=0.5, detail="m was 1.0")])


def test_verdicts_come_flagged_first_then_undecided_then_clear_with_their_evidence() -> None:
    document = load_results(FIXTURE)
    document = document.with_verdicts([verdict("unstable-across-repetitions", "clear"),
                                       verdict("skewed-start", "undecided"),
                                       verdict("unstable", "flagged")])
    lines = data.verdict_lines(document)
    assert [line.state for line in lines] == ["flagged", "undecided", "clear"]
    assert lines[0].evidence == ["m was 1.0 (host client1; intervals 3)"]


def test_fewer_than_three_repetitions_is_a_warning_even_when_not_marked() -> None:
    document = load_results(FIXTURE)
    two = document.model_copy(update={"repetitions": document.repetitions[:2]})
    assert "fewer-than-3-repetitions" in [w.mark for w in data.warnings(two)]
    assert "fewer-than-3-repetitions" not in [w.mark for w in data.warnings(document)]


def test_the_median_row_is_the_documents_summary_with_its_spread() -> None:
    document = load_results(FIXTURE)
    rows = data.summary_rows(document.repetitions)
    assert [row.label for row in rows] == ["repetition 1", "repetition 2", "repetition 3",
                                           "median"]
    assert document.summary is not None
    median = rows[-1]
    assert median.ops_per_sec == document.summary.ops_per_sec.median
    assert median.latency_usec["p99"] == document.summary.latency_usec.p99.median
    low, high = document.summary.latency_usec.p99.min, document.summary.latency_usec.p99.max
    assert median.spread["p99"].startswith(f"{low:,.0f}–{high:,.0f}")


def test_each_spectrum_line_climbs_and_meets_the_repetitions_figures() -> None:
    document = load_results(FIXTURE)
    spectra = data.spectra(document)
    assert [s.command for s in spectra] == ["all commands", "GET", "SET"]
    merged = [c for c in spectra[0].curves if c.merged]
    assert len(merged) == 3
    assert len(spectra[0].curves) == 3 * (1 + 2)
    for line, repetition in zip(merged, document.repetitions, strict=True):
        assert line.latency_usec == sorted(line.latency_usec)
        assert line.at_levels[50.0] == repetition.latency_usec.p50
        assert line.at_levels[100.0] == repetition.latency_usec.max
        assert line.total_count == decode_histogram(repetition.histogram).total_count


@given(st.integers(min_value=1, max_value=10**9))
def test_spectrum_levels_climb_and_stop_where_the_count_runs_out(count: int) -> None:
    levels = data.spectrum_levels(count)
    assert levels[0] == 0.0
    assert levels == sorted(set(levels))
    assert 1.0 / (1.0 - levels[-1] / 100.0) <= min(count, data.SPECTRUM_MAX_FACTOR) * (1 + 1e-9)


def test_timelines_mark_the_warmup_and_the_common_window() -> None:
    document = load_results(FIXTURE)
    line = data.timeline(document, document.repetitions[0])
    assert {s.host for s in line.series} == {"client1", "client2"}
    assert line.warmup_until_s == 2.0
    assert line.window_s == (2.0, 4.0)


def test_optional_sections_are_none_when_absent_and_read_when_present() -> None:
    document = load_results(FIXTURE)
    assert data.optional(document, data.PLATFORM_FIELDS) is None
    with_platform = document.model_copy(update={"platform": {"kernel": "6.1"}})
    assert data.optional(with_platform, data.PLATFORM_FIELDS) == {"kernel": "6.1"}
    page = render_html(data.report_data(with_platform), "coord report x")
    assert "<th>kernel</th><td>6.1</td>" in page
    assert page.count(data.NOT_RECORDED) == 3  # host CPU, baselines, the run command line


def test_figure_data_cannot_close_its_script_element() -> None:
    assert "</script>" not in _json({"name": "</script><script>alert(1)</script>"})


def test_coord_report_writes_the_report_and_standard_files_and_prints_its_path(
        run_coord: RunCoord, results_dir: Path) -> None:
    result = run_coord("report", str(results_dir))
    assert result.status == 0, result.stderr
    assert f"report: {results_dir / 'report.html'}" in result.stdout
    for name in ("report.html", "summary.csv", "rep-1.hlog", "rep-2.hlog", "rep-3.hlog"):
        assert (results_dir / name).stat().st_size > 0


def test_coord_report_text_prints_every_section(run_coord: RunCoord, results_dir: Path) -> None:
    result = run_coord("report", str(results_dir), "--text")
    assert result.status == 0, result.stderr
    for section in ("verdicts and warnings", "summary", "latency spectrum", "over time",
                    "host CPU", "network baselines", "platform", "inventory as run",
                    "provenance", data.NOT_RECORDED, "error-rate-above-threshold", "median"):
        assert section in result.stdout, section


@pytest.mark.parametrize(("damage", "says"), [
    ("unknown-version", "schema_version 99 is not supported"),
    ("truncated", "not JSON"),
    ("no-results", "not a results directory (no results.json)"),
    ("missing", "not a results directory (no such directory)"),
])
def test_a_bad_results_directory_is_one_line_and_status_2(
        run_coord: RunCoord, results_dir: Path, damage: str, says: str) -> None:
    results = results_dir / "results.json"
    target = results_dir
    if damage == "unknown-version":
        document = json.loads(results.read_text())
        results.write_text(json.dumps({**document, "schema_version": 99}))
    elif damage == "truncated":
        text = results.read_text()
        results.write_text(text[: len(text) // 2])
    elif damage == "no-results":
        results.unlink()
    else:
        target = results_dir / "nowhere"
    result = run_coord("report", str(target))
    assert result.status == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert says in result.stderr
    assert not (results_dir / "report.html").exists()


def test_coord_run_writes_the_report_at_the_end_and_prints_its_path(
        run_coord: RunCoord, results_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's wiring only: the run is replaced by its finished document (the report of a
    whole real run is tests/integration/test_report_browser.py's)."""
    document = load_results(FIXTURE)
    monkeypatch.setattr(cli, "run_benchmark",
                        lambda *args, **kwargs: RunOutcome(results_dir, document))
    example = Path(__file__).parents[2] / "inventory" / "two-clients.yaml"
    result = run_coord("run", "-i", str(example), "--out", str(results_dir))
    assert result.status == 0, result.stderr
    assert f"report: {results_dir / 'report.html'}" in result.stdout
    assert (results_dir / "summary.csv").is_file()


def test_a_missing_plotly_package_is_one_line_naming_the_fix(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(package: str) -> None:
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.setattr(html_module.resources, "files", missing)
    html_module.packed_plotly.cache_clear()
    try:
        with pytest.raises(html_module.PlotlyMissing, match="reinstall coord"):
            html_module.packed_plotly()
    finally:
        html_module.packed_plotly.cache_clear()
