"""The baseline's pairs, sizes, records, marks and the p50 beside the bare round trip. Pure."""

from __future__ import annotations

import json
from pathlib import Path

from coordinator.core import marks
from coordinator.core.baselines import (
    BaselinePair,
    Baselines,
    baseline_marks,
    drift_lines,
    pair_record,
    round_trip_for,
)
from coordinator.core.netperf import RRFigures, parse_rr
from coordinator.inventory.schema import Inventory
from coordinator.results import ResultsDocument, load_results, target_record
from coordinator.results.readings import beside_baseline_lines
from coordinator.run.baseline import Pair, baseline_pairs, rr_sizes
from coordinator.run.view import pair_line
from tests.unit.test_results import FIXTURE, finished_document, inventory

TCP_RR = Path(__file__).parents[1] / "fixtures" / "netperf" / "tcp_rr.txt"


def figures(p50: float, tps: float = 1000.0, mean: float = 1000.0) -> RRFigures:
    return RRFigures(min_usec=1, mean_usec=mean, p50_usec=p50, p90_usec=p50, p99_usec=p50,
                     max_usec=p50 * 2, stddev_usec=1, transactions_per_sec=tps)


def test_default_pairs_are_every_client_to_every_server_host_at_its_data_address() -> None:
    data = inventory().model_dump()
    data["servers"][0]["address"] = "10.0.0.2"
    assert baseline_pairs(Inventory.model_validate(data)) == [
        Pair("client1", "server1", "10.0.0.2"), Pair("client2", "server1", "10.0.0.2")]


def test_pairs_all_is_every_ordered_pair_of_distinct_hosts() -> None:
    data = inventory().model_dump()
    data["baseline"]["pairs"] = "all"
    pairs = baseline_pairs(Inventory.model_validate(data))
    names = ["server1", "client1", "client2"]
    assert [(pair.client, pair.server) for pair in pairs] == [
        (a, b) for a in names for b in names if a != b]
    assert Pair("server1", "client2", "198.18.0.4") in pairs


def test_sizes_come_from_the_baseline_or_the_benchmarks_value_size() -> None:
    data = inventory().model_dump()
    assert rr_sizes(Inventory.model_validate(data)) == (1, 1)
    data["baseline"] |= {"request_size": 64, "response_size": 1024}
    assert rr_sizes(Inventory.model_validate(data)) == (64, 1024)
    data["baseline"]["value_size_from_benchmark"] = True
    data["benchmark"]["builtin"]["value_size"] = 512
    assert rr_sizes(Inventory.model_validate(data)) == (512, 512)
    data["benchmark"] |= {"driver": "memtier", "memtier": {"data_size": 10**6}}
    assert rr_sizes(Inventory.model_validate(data)) == (65536, 65536)


def test_a_pair_row_keeps_every_iteration_their_medians_and_spread() -> None:
    row = pair_record("client1", "server1", "198.18.0.2", (1, 1),
                      [figures(60), figures(64), figures(61)])
    assert [one.p50_usec for one in row.iterations] == [60, 64, 61]
    assert row.median is not None and row.median.p50_usec == 61
    assert row.p50_spread_usec == 4
    assert not row.inconsistent and row.error is None
    assert pair_line(row) == ("client1 → server1: TCP_RR p50 61 µs, mean 1000 µs, p99 61 µs, "
                              "1,000 transactions/s")


def test_a_failed_pair_says_why_and_an_inconsistent_one_is_marked() -> None:
    failed = pair_record("client1", "server1", "a", (1, 1), [], error="no netserver answered")
    assert failed.median is None
    assert pair_line(failed) == "client1 → server1: no netserver answered"
    odd = pair_record("client2", "server1", "a", (1, 1), [figures(60, tps=1500.0)])
    assert odd.inconsistent
    assert baseline_marks(Baselines(before=[failed, odd])) == [
        marks.BASELINE_INCOMPLETE.name, marks.BASELINE_INCONSISTENT.name]
    assert baseline_marks(Baselines(skipped=True)) == [marks.NO_BASELINE.name]


def test_drift_is_reported_per_pair_beyond_its_own_spread() -> None:
    def row(client: str, *p50s: float) -> BaselinePair:
        return pair_record(client, "server1", "a", (1, 1), [figures(p50) for p50 in p50s])

    before = [row("client1", 60, 62, 61), row("client2", 60, 62, 61)]
    after = [row("client1", 61, 63, 62), row("client2", 90, 92, 91)]
    lines = drift_lines(before, after)
    assert lines == ["client2 → server1: p50 61 µs before, 91 µs after (spread 2 / 2 µs)"]
    assert baseline_marks(Baselines(drift=lines)) == [marks.NETWORK_DRIFT.name]


def test_the_summary_puts_each_clients_p50_beside_the_bare_round_trip() -> None:
    document = finished_document()
    target = target_record(inventory(), inventory().servers[0])
    real = parse_rr(TCP_RR.read_text(), 0)
    rows = [pair_record(client, "server1", target.address, (1, 1), [real])
            for client in ("client1", "client2")]
    with_baseline = ResultsDocument.model_validate(
        {**dict(document), "target": target, "baselines": Baselines(before=rows)})
    assert round_trip_for(with_baseline.baselines, "client1", target.address) == 6
    lines = beside_baseline_lines(with_baseline)
    assert [line.split(":")[0] for line in lines] == ["client1 → redis", "client2 → redis"]
    assert lines[0].endswith("of which the bare network round trip is 6 µs (3.8%)")
    assert beside_baseline_lines(document) == []


def test_documents_without_baselines_still_read_and_write_none() -> None:
    old = load_results(FIXTURE)
    assert old.baselines is None
    assert "baselines" not in json.loads(old.model_dump_json())
