"""The report's data extraction (pure), its renderers and `coord report` on good and bad
directories, from a real run's document (tests/fixtures/results-v1.json)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from coordinator import cli
from coordinator.core.baselines import BaselinePair, Baselines, pair_record
from coordinator.core.histograms import decode_histogram
from coordinator.core.netperf import RRFigures
from coordinator.report import data
from coordinator.report import html as html_module
from coordinator.report.html import _json, render_html
from coordinator.report.plots import cpu_figure, timeline_figure
from coordinator.report.text import render_text
from coordinator.results import Evidence, Verdict, load_results
from coordinator.results.model import ResultsDocument, TargetRecord, redact_command_line
from coordinator.results.readings import beside_baseline_lines
from coordinator.run.runner import RunOutcome
from tests.conftest import RunCoord
from tests.unit.test_platform_model import platform

FIXTURE = Path(__file__).parents[1] / "fixtures" / "results-v1.json"
FIXTURE_V2 = FIXTURE.with_name("results-v2.json")


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


def test_sections_a_run_did_not_record_say_so() -> None:
    document = load_results(FIXTURE)
    report = data.report_data(document)
    assert (report.host_cpu, report.baselines, report.platform) == (None, None, None)
    page = render_html(report, "coord report x")
    # host CPU, baselines, platform, the run command line
    assert page.count(data.NOT_RECORDED) == 4
    assert render_text_of(document).count(data.NOT_RECORDED) == 4


def render_text_of(document: ResultsDocument) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render_text(data.report_data(document), "coord report x"))
    return console.export_text()


def test_a_host_running_two_targets_shows_each_targets_processes_apart() -> None:
    """As the server-bound verdicts judge them: told apart by the ports each listens on."""
    document = load_results(FIXTURE_V2)
    servers = [*document.inventory["servers"],  # type: ignore[misc]
               {"name": "rest", "host": "server1", "port": 8080}]
    repetition = document.repetitions[0]
    metrics = []
    for host in repetition.metrics:
        intervals = []
        for interval in host.intervals:
            redis = [p.model_copy(update={"ports": [6379], "cpu_percent": 90.0})
                     for p in interval.server_processes]
            rest = [p.model_copy(update={"pid": p.pid + 1, "name": "gunicorn", "ports": [8080],
                                         "cpu_percent": 30.0}) for p in interval.server_processes]
            intervals.append(interval.model_copy(update={"server_processes": redis + rest}))
        metrics.append(host.model_copy(update={"intervals": intervals}))
    document = document.model_copy(update={
        "inventory": {**document.inventory, "servers": servers},
        "repetitions": [repetition.model_copy(update={"metrics": metrics})]})
    cpu = data.host_cpu(document)
    assert cpu is not None
    server = {line.host: line for line in cpu[0].lines}["server1"]
    assert set(server.server_percent) == {"redis", "rest"}
    assert {cpu for cpu in server.server_percent["redis"] if cpu is not None} == {90.0}
    assert {cpu for cpu in server.server_percent["rest"] if cpu is not None} == {30.0}
    names = [trace["name"] for trace in cpu_figure(cpu[0])["data"]]
    assert "server1 server processes (redis)" in names
    assert "server1 server processes (rest)" in names
    assert "redis: 90.0 / 90.0; rest: 30.0 / 30.0" in render_text_of(document)


def test_host_cpu_follows_each_hosts_metrics_and_draws_a_plot_per_repetition() -> None:
    document = load_results(FIXTURE_V2)
    cpu = data.host_cpu(document)
    assert cpu is not None
    assert [c.repetition for c in cpu] == [r.index for r in document.repetitions]
    first = document.repetitions[0]
    for line, metrics in zip(cpu[0].lines, first.metrics, strict=True):
        assert line.host == metrics.host
        assert line.busy_percent == [i.cpu.busy if i.cpu else None for i in metrics.intervals]
        hottest = [i.hottest_load_process() for i in metrics.intervals]
        assert line.hottest_load_percent == [p.cpu_percent if p else None for p in hottest]
    by_host = {line.host: line for line in cpu[0].lines}
    assert list(by_host["server1"].server_percent) == [""]  # one target: its processes in all
    assert any(v is not None for v in by_host["server1"].server_percent[""])
    assert by_host["client1"].server_percent == {}
    assert any(v is not None for v in by_host["client1"].hottest_load_percent)
    figure = cpu_figure(cpu[0])
    assert {t["yaxis"] for t in figure["data"]} == {"y", "y2"}
    page = render_html(data.report_data(document), "coord report x")
    assert page.count('class="plot"') == (len(data.spectra(document))
                                          + 2 * len(document.repetitions))
    assert "hottest load process" in render_text_of(document)


def pair(client: str, p50: float) -> BaselinePair:
    figures = RRFigures(min_usec=p50 / 2, mean_usec=p50, p50_usec=p50, p90_usec=p50 * 1.2,
                        p99_usec=p50 * 2, max_usec=p50 * 3, stddev_usec=1.0,
                        transactions_per_sec=1e6 / p50)
    return pair_record(client, "server", "198.18.0.10", (1, 1), [figures, figures])


def test_the_baseline_table_has_the_benchmark_p50_beside_it() -> None:
    document = load_results(FIXTURE)
    target = TargetRecord(server="redis", address="198.18.0.10", port=6379,
                          source_addresses={})
    measured = document.model_copy(update={
        "target": target,
        "baselines": Baselines(before=[pair("client1", 40.0)], after=[pair("client1", 90.0)],
                               drift=["client1 → server: p50 40 µs before, 90 µs after"])})
    section = data.baseline_section(measured)
    assert section is not None and document.summary is not None
    assert [(row.when, row.p50_usec) for row in section.rows] == [("before", 40.0),
                                                                  ("after", 90.0)]
    assert section.benchmark_p50_usec == document.summary.latency_usec.p50.median
    assert section.beside == beside_baseline_lines(measured)
    assert section.beside and "bare network round trip is 40 µs" in section.beside[0]
    page = render_html(data.report_data(measured), "coord report x")
    assert "<td>client1 → server</td><td>40.0</td>" in page
    assert "network drift: client1 → server" in page
    assert "bare network round trip is 40 µs" in render_text_of(measured)
    skipped = document.model_copy(update={"baselines": Baselines(skipped=True)})
    assert "skipped in this run" in render_html(data.report_data(skipped), "x")


def test_the_platform_section_lists_every_hosts_and_servers_facts() -> None:
    document = load_results(FIXTURE)
    described = document.model_copy(update={"platform": platform()})
    tables = data.platform_tables(described)
    assert tables is not None
    assert [t.title for t in tables] == ["hosts", "target servers"]
    assert tables[1].columns["redis"]["INFO redis_version"] == "7.0.15"
    page = render_html(data.report_data(described), "x")
    assert "<th>INFO redis_version</th><td>7.0.15</td>" in page
    assert "v1 /lab/client1" in render_text_of(described)


def test_a_stall_shows_in_the_over_time_plot_as_the_longest_gap() -> None:
    document = load_results(FIXTURE)
    repetition = document.repetitions[0]
    agent = repetition.agents[0]
    stalled = [i.model_copy(update={"gap_usec": 900_000 if i.index == 2 else 1_000,
                                    "max_usec": 5_000}) for i in agent.intervals]
    agents = [agent.model_copy(update={"intervals": stalled}), *repetition.agents[1:]]
    line = data.timeline(document, repetition.model_copy(update={"agents": agents}))
    figure = timeline_figure(line)
    gaps = [t for t in figure["data"] if t.get("yaxis") == "y3"]
    assert len(gaps) == 1 and max(gaps[0]["y"]) == 900.0
    assert any(t.get("yaxis") == "y2" and t["name"].endswith(" max") for t in figure["data"])


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
    given: dict[str, Any] = {}

    def run(*args: object, **kwargs: Any) -> RunOutcome:
        given.update(kwargs)
        return RunOutcome(results_dir, document)

    monkeypatch.setattr(cli, "run_benchmark", run)
    example = Path(__file__).parents[2] / "inventory" / "two-clients.yaml"
    result = run_coord("run", "-i", str(example), "--out", str(results_dir),
                       "--set", "servers[0].password=hunter2")
    assert result.status == 0, result.stderr
    assert f"report: {results_dir / 'report.html'}" in result.stdout
    assert (results_dir / "summary.csv").is_file()
    assert given["command_line"] == ["coord", "run", "-i", str(example), "--out",
                                     str(results_dir), "--set", "servers[0].password=hunter2"]
    page = (results_dir / "report.html").read_text()
    assert "servers[0].password=***" in page and "hunter2" not in page


@pytest.mark.parametrize(("arguments", "kept"), [
    (["--set", "servers.0.password=s3cret"], ["--set", "servers.0.password=***"]),
    (["--set=servers.0.password=s3cret"], ["--set=servers.0.password=***"]),
    (["--set", "auth.api_token=a=b"], ["--set", "auth.api_token=***"]),
    (["--client-secret=x", "--duration", "2s"], ["--client-secret=***", "--duration", "2s"]),
    (["--set", "benchmark.builtin.connections=5"], ["--set", "benchmark.builtin.connections=5"]),
    (["--set", "servers.0.password_file=/etc/pw"], ["--set", "servers.0.password_file=***"]),
])
def test_the_command_line_is_kept_with_its_secrets_redacted(
        arguments: list[str], kept: list[str]) -> None:
    assert redact_command_line(["coord", "run", *arguments]) == ["coord", "run", *kept]


def test_the_command_line_is_stored_shown_and_never_with_a_secret() -> None:
    document = load_results(FIXTURE)
    stored = ResultsDocument.model_validate(
        {**dict(document), "command_line": ["coord", "run", "--set", "x.password=***"]})
    assert json.loads(stored.model_dump_json())["command_line"][-1] == "x.password=***"
    assert "<code>coord run --set &#x27;x.password=***&#x27;</code>" in render_html(
        data.report_data(stored), "x")
    assert "command_line" not in json.loads(document.model_dump_json())
    with pytest.raises(ValueError, match="command_line holds a secret"):
        ResultsDocument.model_validate(
            {**dict(document), "command_line": ["coord", "--set", "x.password=leak"]})


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
