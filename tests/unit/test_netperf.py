"""netperf's real outputs (captured from the lab, tests/fixtures/netperf/) read into figures;
the consistency check and drift detection."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.core.netperf import (
    NetperfFailed,
    RRFigures,
    drifted,
    inconsistent,
    median_figures,
    parse_rr,
    parse_stream_mbps,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "netperf"


def output(name: str) -> str:
    return (FIXTURES / name).read_text()


def rr(p50: float = 6, mean: float = 7.49, tps: float = 132605.232) -> RRFigures:
    return RRFigures(min_usec=5, mean_usec=mean, p50_usec=p50, p90_usec=11, p99_usec=14,
                     max_usec=4895, stddev_usec=24.12, transactions_per_sec=tps)


def test_tcp_rr_with_selectors_reads_every_figure() -> None:
    assert parse_rr(output("tcp_rr.txt"), 0) == rr()


def test_tcp_stream_reads_the_throughput_in_mbit_per_s() -> None:
    assert parse_stream_mbps(output("tcp_stream.txt"), 0) == pytest.approx(6790.61)


@pytest.mark.parametrize(("name", "status", "reason"), [
    ("refused.txt", 255, "no netserver answered on 198.18.204.10 port 12998 (connection "
     "refused: netserver not running or stopped) (exit status 255)"),
    ("unknown_test.txt", 1, "this netperf does not know the test TCP_BOGUS (exit status 1)"),
    ("netserver_died.txt", 1, "the connection to netserver was lost mid-test (recv_data "
     "failed: Connection reset by peer) (exit status 1)"),
])
def test_a_failed_netperf_is_one_line_saying_why(name: str, status: int, reason: str) -> None:
    with pytest.raises(NetperfFailed) as failed:
        parse_rr(output(name), status)
    assert str(failed.value) == reason


def test_figures_are_matched_by_column_title_not_position() -> None:
    lines = output("tcp_rr.txt").splitlines()
    titles, values = lines[-2].split(","), lines[-1].split(",")
    swapped = ",".join(reversed(titles)) + "\n" + ",".join(reversed(values)) + "\n"
    assert parse_rr(swapped, 0) == rr()


def test_a_missing_column_or_a_stray_value_is_refused() -> None:
    lines = output("tcp_rr.txt").splitlines()
    without_p99 = [",".join(part for part in line.split(",")
                            if not part.startswith(("99th", "14"))) for line in lines[-2:]]
    with pytest.raises(NetperfFailed, match="no '99th Percentile Latency Microseconds'"):
        parse_rr("\n".join(without_p99), 0)
    with pytest.raises(NetperfFailed, match="values for"):
        parse_rr(lines[-2] + "\n" + lines[-1] + ",7\n", 0)
    with pytest.raises(NetperfFailed, match="not a number"):
        parse_rr(lines[-2] + "\n" + lines[-1].replace("7.49", "nan?"), 0)


def test_success_status_without_figures_is_a_failure() -> None:
    with pytest.raises(NetperfFailed, match="no figures"):
        parse_rr("MIGRATED TCP REQUEST/RESPONSE TEST\n", 0)


def test_the_captured_figures_are_consistent() -> None:
    assert not inconsistent(parse_rr(output("tcp_rr.txt"), 0))


def test_transactions_disagreeing_with_mean_latency_by_over_10_percent_are_flagged() -> None:
    assert not inconsistent(rr(mean=100.0, tps=10_000 * 1.099))
    assert inconsistent(rr(mean=100.0, tps=10_000 * 1.101))
    assert inconsistent(rr(mean=100.0, tps=10_000 * 0.899))


def test_drift_is_a_change_beyond_the_pairs_own_spread() -> None:
    assert not drifted([60, 62, 61], [63, 61, 62])  # moved 1 µs, spread 2 µs
    assert drifted([60, 62, 61], [70, 71, 69])
    assert not drifted([6], [7])  # netperf's resolution is 1 µs
    assert drifted([6], [9])
    assert not drifted([], [9])


@given(st.lists(st.floats(1, 1e6), min_size=1, max_size=7))
def test_no_drift_against_itself_and_medians_stay_within_the_iterations(
        values: list[float]) -> None:
    assert not drifted(values, values)
    median = median_figures([rr(p50=value) for value in values]).p50_usec
    assert min(values) <= median <= max(values)
