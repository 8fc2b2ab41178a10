"""A Redis Cluster's per-primary rows (coordinator.core.shards), in the terminal summary and the
report."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from coordinator.core.figures import CommandRecord, Latency
from coordinator.core.shards import shard_rows
from coordinator.report import data
from coordinator.report.html import render_html
from coordinator.report.text import render_text
from coordinator.results import ResultsDocument
from coordinator.run.view import summary_table
from tests.unit.test_results import finished_document


def record(count: int, p50: int) -> CommandRecord:
    latency = Latency(p50=p50, p90=p50, p95=p50, p99=2 * p50, p999=2 * p50, max=2 * p50,
                      mean=float(p50))
    return CommandRecord(count=count, ops_per_sec=count / 2, latency_usec=latency, histogram="")


def clustered(counts: list[dict[str, int]]) -> ResultsDocument:
    """The fixture's repetitions, each with the primaries' counts given."""
    document = finished_document(len(counts))
    repetitions = [r.model_copy(update={"shards": {name: record(n, 100 + n) for name, n in
                                                   per.items()}})
                   for r, per in zip(document.repetitions, counts, strict=True)]
    return document.model_copy(update={"repetitions": repetitions})


shard_counts = st.dictionaries(st.sampled_from(["a:1", "b:2", "c:3", "d:4"]),
                               st.integers(0, 10_000), min_size=1)


@given(st.lists(shard_counts, min_size=1, max_size=4))
def test_shares_cover_every_reply_and_an_even_cluster_is_at_one(
        counts: list[dict[str, int]]) -> None:
    rows = shard_rows(clustered(counts).repetitions)
    names = sorted({name for per in counts for name in per})
    assert [row.shard for row in rows] == names
    total = sum(sum(per.values()) for per in counts)
    for row in rows:
        assert row.share == (sum(per.get(row.shard, 0) for per in counts) / total if total else 0)
        assert row.primaries == len(names)
    if total:
        assert abs(sum(row.share for row in rows) - 1) < 1e-9


def test_a_hot_shard_stands_out_in_the_summary_and_the_report() -> None:
    document = clustered([{"10.0.0.1:7000": 8000, "10.0.0.1:7001": 1000, "10.0.0.1:7002": 1000},
                          {"10.0.0.1:7000": 8000, "10.0.0.1:7001": 1000, "10.0.0.1:7002": 1000}])
    rows = shard_rows(document.repetitions)
    assert [round(row.load_factor, 2) for row in rows] == [2.4, 0.3, 0.3]
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(summary_table(document))
    console.print(render_text(data.report_data(document), "coord report x"))
    for text in (console.export_text(),
                 render_html(data.report_data(document), "coord report x")):
        assert "10.0.0.1:7000" in text and "80.0%" in text and "2.40" in text


def test_a_single_server_shows_no_primary_table() -> None:
    document = finished_document(1)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(summary_table(document))
    assert "per primary" not in console.export_text()
    assert "Per primary" not in render_html(data.report_data(document), "coord report x")
