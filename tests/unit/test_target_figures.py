"""A run loading several servers at once: each server's figures merged over its own clients
only (never a histogram mixing two servers), the repetition's own figures the first target's,
every client judged (in ``agents``). Pure."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from coordinator.core.figures import Latency, TargetFigures
from coordinator.core.histograms import decode_histogram
from coordinator.core.reports import AgentReport
from coordinator.core.stats import LoadedServer, repetition_figures, targets_figures
from coordinator.core.target_rows import target_rows
from coordinator.report import data
from coordinator.report.html import render_html
from coordinator.report.text import render_text
from coordinator.results import Repetition, ResultsDocument
from coordinator.run.view import summary_table
from tests.unit.test_results import finished_document
from tests.unit.test_stats import command, interval, report

REST = LoadedServer("rest", "http", ["client1", "client3"])
REDIS = LoadedServer("redis", "builtin", ["client2"])


def reports_of(rest: list[int], redis: list[int]) -> list[AgentReport]:
    """client1 and client3 load rest (each answering ``rest`` latencies per interval),
    client2 loads redis; one warm-up interval then two measured."""
    def own(latencies: list[int], name: str) -> list[dict[str, object]]:
        return [interval(index, "warmup" if index == 0 else "measure",
                         commands={name: command(latencies)}) for index in range(3)]
    return [report("client1", own(rest, "predict")), report("client2", own(redis, "GET")),
            report("client3", own(rest, "predict"))]


def test_each_target_is_merged_over_its_own_clients_only() -> None:
    reports = reports_of([5000, 6000, 7000], [100])
    figures = targets_figures(reports, [1, 2], [REST, REDIS], index=2)
    rest, redis = figures.targets["rest"], figures.targets["redis"]
    assert (rest.count, redis.count) == (2 * 2 * 3, 2 * 1)
    assert (rest.driver, rest.clients, redis.clients) == ("http", ["client1", "client3"],
                                                          ["client2"])
    assert redis.latency_usec.max < 200 and rest.latency_usec.p50 > 4900
    assert set(rest.commands) == {"predict"} and set(redis.commands) == {"GET"}
    assert rest.ops_per_sec == pytest.approx(12 / 2)
    # the repetition's own figures are the first target's; every client is in agents
    assert (figures.index, figures.count, figures.histogram) == (2, rest.count, rest.histogram)
    assert [agent.host for agent in figures.agents] == ["client1", "client2", "client3"]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=20),
       st.lists(st.integers(1, 10**6), min_size=1, max_size=20))
def test_a_targets_histogram_is_exactly_its_clients_merged(rest: list[int],
                                                           redis: list[int]) -> None:
    reports = reports_of(rest, redis)
    figures = targets_figures(reports, [1, 2], [REDIS, REST])
    alone = repetition_figures([reports[1]], [1, 2])
    assert figures.targets["redis"].histogram == alone.histogram
    assert figures.count == alone.count  # redis listed first: the top level is its own
    assert decode_histogram(figures.targets["rest"].histogram).get_total_count() == \
        2 * 2 * len(rest)


def test_a_report_of_a_client_in_no_target_is_refused() -> None:
    with pytest.raises(ValueError, match="client3: load report of a client in no target"):
        targets_figures(reports_of([1], [1]), [1, 2],
                        [LoadedServer("rest", "http", ["client1"]), REDIS])


def test_a_single_server_repetition_reads_and_writes_without_targets() -> None:
    single = repetition_figures(reports_of([1], [1])[:1], [1, 2])
    assert "targets" not in json.loads(single.model_dump_json())
    several = targets_figures(reports_of([1], [2]), [1, 2], [REST, REDIS])
    again = Repetition.model_validate_json(several.model_dump_json())
    assert again.targets == several.targets


def with_targets(document: ResultsDocument, per: list[dict[str, tuple[float, int]]]
                 ) -> ResultsDocument:
    """``document``'s repetitions, each with the servers' (ops/s, p50 µs) given."""
    def target(ops: float, p50: int, clients: list[str]) -> TargetFigures:
        latency = Latency(p50=p50, p90=p50, p95=p50, p99=2 * p50, p999=2 * p50, max=2 * p50,
                          mean=float(p50))
        return TargetFigures(driver="http" if clients == ["client2"] else "builtin",
                             clients=clients, count=int(ops), requests=int(ops) + 1,
                             ops_per_sec=ops, latency_usec=latency, errors={"http_5xx": 1},
                             error_rate=0.0, overflow=0, histogram="", commands={})
    repetitions = [r.model_copy(update={"targets": {
        name: target(ops, p50, ["client1"] if name == "redis" else ["client2"])
        for name, (ops, p50) in figures.items()}})
        for r, figures in zip(document.repetitions, per, strict=True)]
    return document.model_copy(update={"repetitions": repetitions})


def test_the_summary_and_the_report_show_one_row_per_server() -> None:
    document = with_targets(finished_document(3), [
        {"redis": (40_000, 20), "rest": (1000, 5000)},
        {"redis": (42_000, 22), "rest": (1100, 5200)},
        {"redis": (41_000, 21), "rest": (1200, 5400)}])
    rows = target_rows(document.repetitions)
    assert [(row.server, row.ops_per_sec, row.p50_usec, row.errors) for row in rows] == [
        ("redis", 41_000, 21, 3), ("rest", 1100, 5200, 3)]
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(summary_table(document))
    console.print(render_text(data.report_data(document), "coord report x"))
    text = console.export_text()
    html = render_html(data.report_data(document), "coord report x")
    assert "per server" in text and "Per server" in html
    for shown in (text, html):
        assert "1,100" in shown and "5.200" in shown and "41,000" in shown and "client2" in shown


def test_a_single_server_shows_no_server_table() -> None:
    document = finished_document(1)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(summary_table(document))
    assert "per server" not in console.export_text()
    assert "Per server" not in render_html(data.report_data(document), "coord report x")
