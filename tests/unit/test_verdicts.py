"""Verdicts over hand-built and generated series: each threshold exactly at, just under and just
over, and missing metrics (undecided, never guessed clear). Pure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator import cli
from coordinator.core import marks
from coordinator.core.figures import Repetition
from coordinator.core.host_verdicts import NO_METRICS, HostSeries, ServerSeries, host_verdicts
from coordinator.core.stats import (
    LoadedServer,
    aggregate,
    repetition_figures,
    targets_figures,
)
from coordinator.core.verdicts import (
    Verdict,
    flagged_marks,
    repetition_verdicts,
    run_verdicts,
    skew_verdict,
    strict_failures,
    throughput_points,
    too_short_verdict,
    unstable_verdict,
)
from coordinator.inventory.loader import load_inventory
from coordinator.inventory.schema import Thresholds
from coordinator.results import ResultsDocument, new_document
from coordinator.run.runner import RunOutcome
from tests.unit.test_stats import command, interval, report

EXAMPLE = Path(__file__).parents[2] / "inventory" / "two-clients.yaml"
DEFAULTS = Thresholds()
WINDOW = list(range(5, 35))
"""30 measured intervals, after 5 of warm-up."""


def points(values: list[float], first: int = 5) -> list[tuple[int, float]]:
    return [(first + offset, value) for offset, value in enumerate(values)]


def thresholds(**changes: Any) -> Thresholds:
    return Thresholds.model_validate({**DEFAULTS.model_dump(), **changes})


def repetition(counts: list[int], *, errors: int = 0, index: int = 1,
               skew_ns: int = 0) -> Repetition:
    """A repetition of one agent whose window intervals count ``counts`` replies each."""
    intervals = [interval(i, commands={"GET": command([100] * n)},
                          errors={"connection": errors} if errors and i == 0 else None)
                 for i, n in enumerate(counts)]
    agent = report("client1", intervals)
    return repetition_figures([agent], list(range(len(counts))), index=index,
                              start_skew_ns=skew_ns)


def client(**series: Any) -> HostSeries:
    base: dict[str, Any] = {
        "host": "client1", "role": "client", "interval_indices": WINDOW,
        "cpu_total_percent": [50.0] * 30, "load_process_cpu": {"1": [60.0] * 30,
                                                                "2": [60.0] * 30},
        "hottest_thread_cpu": [60.0] * 30}
    return HostSeries(**{**base, **series})


def server(cpu: list[float | None] | None, limit: float | None = 1.0) -> HostSeries:
    return HostSeries(host="server", role="server", interval_indices=WINDOW, servers=[
        ServerSeries(host="server", target=None, interval_indices=WINDOW,
                     process_cpu=cpu or (), cpu_limit_cores=limit)])


# --------------------------------------------------------------------------------------------
# unstable inside a repetition


def test_steady_throughput_is_not_unstable() -> None:
    verdict = unstable_verdict(points([1000.0] * 30), 1, DEFAULTS)
    assert verdict.state == "clear" and verdict.evidence == []


@pytest.mark.parametrize(("value", "state"), [(150.0, "clear"), (149.0, "clear"),
                                              (151.0, "flagged"), (49.0, "flagged"),
                                              (50.0, "clear")])
def test_one_interval_is_an_outlier_only_beyond_the_threshold(value: float, state: str) -> None:
    values = [100.0] * 30
    values[12] = value
    verdict = unstable_verdict(points(values), 1, DEFAULTS)
    assert verdict.state == state
    if state == "flagged":
        (evidence,) = verdict.evidence
        assert evidence.metric == "throughput_outlier_percent"
        assert evidence.intervals == [17]  # the 13th interval of a window starting at 5
        assert evidence.threshold == 50.0
        assert "interval 17" in verdict.summary


def test_a_trend_exactly_at_the_threshold_does_not_flag_and_just_over_does() -> None:
    rising = [95.0 + i for i in range(11)]  # 95..105: +10 over the window, mean 100
    assert unstable_verdict(points(rising), 1, DEFAULTS).state == "clear"
    steeper = [94.9 + 1.02 * i for i in range(11)]
    verdict = unstable_verdict(points(steeper), 1, DEFAULTS)
    assert verdict.state == "flagged"
    (evidence,) = verdict.evidence
    assert evidence.metric == "throughput_trend_percent"
    assert evidence.intervals == [5, 15] and evidence.value is not None and evidence.value > 10
    assert "rose" in verdict.summary
    falling = list(reversed(steeper))
    assert "fell" in unstable_verdict(points(falling), 1, DEFAULTS).summary


def test_unstable_is_undecided_without_enough_intervals_or_throughput() -> None:
    assert unstable_verdict(points([100.0, 100.0]), 1, DEFAULTS).state == "undecided"
    assert unstable_verdict(points([0.0] * 5), 1, DEFAULTS).state == "undecided"


@settings(max_examples=200, deadline=None)
@given(count=st.integers(5, 60), at=st.integers(0, 59), deviation=st.integers(-99, 300))
def test_the_outlier_named_is_the_interval_moved_and_only_past_the_threshold(
    count: int, at: int, deviation: int
) -> None:
    # Throughput in percent of the level, exact in floating point, so a deviation of exactly
    # the threshold is exactly at it (independence from the unit is the next test's).
    values = [100.0] * count
    where = at % count
    values[where] = 100.0 + deviation
    verdict = unstable_verdict(points(values), 1, DEFAULTS)
    outliers = [e for e in verdict.evidence if e.metric == "throughput_outlier_percent"]
    if abs(deviation) > DEFAULTS.outlier_percent:
        assert [e.intervals for e in outliers] == [[5 + where]]
    else:
        assert outliers == []


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(1.0, 1e6), min_size=3, max_size=40), scale=st.floats(0.01, 100))
def test_unstable_does_not_depend_on_the_unit_of_throughput(values: list[float],
                                                            scale: float) -> None:
    once = unstable_verdict(points(values), 1, DEFAULTS)
    scaled = unstable_verdict(points([v * scale for v in values]), 1, DEFAULTS)
    near = [e for e in once.evidence if e.value is not None
            and abs(abs(e.value) - (e.threshold or 0)) < 1e-6]
    if not near:
        assert once.state == scaled.state


# --------------------------------------------------------------------------------------------
# skewed start, too short, errors


@pytest.mark.parametrize(("skew_ns", "interval_s", "state"), [
    (1_000_000, 1.0, "clear"),       # exactly 1 ms
    (1_000_001, 1.0, "flagged"),
    (999_000, 1.0, "clear"),
    (500_000, 0.005, "clear"),       # exactly 10 % of a 5 ms interval
    (600_000, 0.005, "flagged"),
])
def test_a_start_skew_flags_above_1ms_or_10_percent_of_an_interval(
    skew_ns: int, interval_s: float, state: str
) -> None:
    verdict = skew_verdict(repetition([1] * 12, skew_ns=skew_ns), interval_s, DEFAULTS)
    assert verdict.state == state
    if state == "flagged":
        (evidence,) = verdict.evidence
        assert evidence.metric == "start_skew_usec"
        assert evidence.value == skew_ns / 1000
        assert evidence.threshold == min(1000.0, interval_s * 1e6 * 0.1)
        assert ("% of the" in verdict.summary) == (interval_s < 0.01)


@pytest.mark.parametrize(("count", "state"), [(9, "flagged"), (10, "clear"), (30, "clear")])
def test_fewer_intervals_than_the_minimum_is_too_short(count: int, state: str) -> None:
    verdict = too_short_verdict(points([100.0] * count), 1, DEFAULTS)
    assert verdict.state == state
    if state == "flagged":
        assert verdict.evidence[0].metric == "window_intervals"
        assert verdict.evidence[0].value == count


@pytest.mark.parametrize(("first", "state"), [(90.0, "clear"), (89.0, "flagged"),
                                              (91.0, "clear")])
def test_first_intervals_still_rising_after_the_warmup_is_too_short(first: float,
                                                                   state: str) -> None:
    verdict = too_short_verdict(points([first] * 3 + [100.0] * 27), 1, DEFAULTS)
    assert verdict.state == state
    if state == "flagged":
        (evidence,) = verdict.evidence
        assert evidence.metric == "settle_deficit_percent" and evidence.intervals == [5, 6, 7]
        assert "benchmark.warmup" in verdict.summary


def test_too_short_to_judge_settling_is_flagged_short_not_guessed() -> None:
    verdict = too_short_verdict(points([100.0] * 4), 1, DEFAULTS)
    assert verdict.state == "flagged"
    assert verdict.evidence[0].metric == "window_intervals"


def test_errors_flag_above_the_threshold_only() -> None:
    failing = repetition([99] * 12, errors=1)  # 1 error in 1189 requests
    rate = failing.error_rate
    judged = repetition_verdicts(failing, interval_s=1.0, error_threshold=rate,
                                 thresholds=DEFAULTS, hosts=None)
    assert _named(judged, marks.ERROR_RATE_ABOVE_THRESHOLD).state == "clear"
    judged = repetition_verdicts(failing, interval_s=1.0, error_threshold=rate * 0.99,
                                 thresholds=DEFAULTS, hosts=None)
    errors = _named(judged, marks.ERROR_RATE_ABOVE_THRESHOLD)
    assert errors.state == "flagged"
    assert errors.evidence[0].intervals == [0] and errors.evidence[0].value == rate
    assert "connection 1" in errors.summary


def two_servers(rest_errors: int) -> Repetition:
    """client1 loading ``redis`` (10 x 1000 replies, no error) and client2 loading ``rest``
    (10 x 10 replies, ``rest_errors`` http_5xx in interval 3)."""
    redis_intervals = [interval(i, commands={"GET": command([100] * 1000)}) for i in range(10)]
    rest_intervals = [interval(i, commands={"ok": command([5000] * 10)},
                               errors={"http_5xx": rest_errors} if i == 3 and rest_errors
                               else None) for i in range(10)]
    return targets_figures(
        [report("client1", redis_intervals), report("client2", rest_intervals)],
        list(range(10)),
        [LoadedServer("redis", "builtin", ["client1"]), LoadedServer("rest", "http", ["client2"])])


def test_each_server_of_a_run_loading_several_is_judged_on_its_own_errors() -> None:
    """The repetition's own figures are the first server's (Redis, clean); the model server's
    failures (5 of 105 requests, 0.05 % of both servers' together) flag the repetition."""
    failing = two_servers(rest_errors=5)
    assert failing.error_rate == 0 and failing.targets["rest"].error_rate > 0.04
    judged = _named(repetition_verdicts(failing, interval_s=1.0, error_threshold=0.01,
                                        thresholds=DEFAULTS, hosts=None),
                    marks.ERROR_RATE_ABOVE_THRESHOLD)
    assert judged.state == "flagged"
    (evidence,) = judged.evidence
    assert evidence.detail.startswith("rest: ") and evidence.intervals == [3]
    assert "rest: 4.76% of requests failed (http_5xx 5)" in judged.summary
    assert "redis" not in judged.summary
    clear = _named(repetition_verdicts(two_servers(rest_errors=0), interval_s=1.0,
                                       error_threshold=0.01, thresholds=DEFAULTS, hosts=None),
                   marks.ERROR_RATE_ABOVE_THRESHOLD)
    assert clear.state == "clear"
    assert clear.summary == "redis: error rate 0.00%; rest: error rate 0.00%, within 1.00%"


# --------------------------------------------------------------------------------------------
# host verdicts


def _named(verdicts: list[Verdict], kind: marks.MarkKind, host: str | None = None) -> Verdict:
    (found,) = [v for v in verdicts if v.name == kind.name and (host is None or host in v.hosts)]
    return found


def _hosts(repetition_: Repetition, *series: HostSeries) -> list[Verdict]:
    return host_verdicts(repetition_, list(series), ["server"], 1.0, DEFAULTS)


def window_repetition() -> Repetition:
    """A repetition whose window is intervals 5..34, measured by client1."""
    intervals = [interval(i, "warmup" if i < 5 else "measure") for i in range(35)]
    return repetition_figures([report("client1", intervals)], WINDOW)


def test_a_saturated_load_process_makes_its_client_the_bottleneck_in_words() -> None:
    busy = [99.0] * 28 + [50.0] * 2
    verdicts = _hosts(window_repetition(), client(load_process_cpu={"1": [60.0] * 30,
                                                                    "2": busy}),
                      server([50.0] * 30))
    bound = _named(verdicts, marks.CLIENT_BOUND)
    assert bound.state == "flagged" and bound.hosts == ["client1"]
    assert bound.summary == ("client1 was the bottleneck: load process 2 at 99 % of a core in 28 "
                             "of 30 intervals; add client machines or load processes (the "
                             "figures measure the client, not the server)")
    (evidence,) = bound.evidence
    assert evidence.metric == "load_process_cpu_percent[2]" and evidence.value == 99.0
    assert evidence.intervals == WINDOW[:28] and evidence.threshold == 95.0
    assert _named(verdicts, marks.SERVER_BOUND).state == "clear"


@pytest.mark.parametrize(("over", "value", "state"), [
    (3, 96.0, "clear"),     # 3 of 30 = exactly 10 %
    (4, 96.0, "flagged"),
    (30, 95.0, "clear"),    # exactly at the process threshold
    (30, 95.5, "flagged"),
])
def test_client_cpu_flags_over_its_threshold_in_more_than_the_share_of_intervals(
    over: int, value: float, state: str
) -> None:
    hottest = [value] * over + [10.0] * (30 - over)
    verdicts = _hosts(window_repetition(), client(hottest_thread_cpu=hottest))
    assert _named(verdicts, marks.CLIENT_BOUND).state == state


@pytest.mark.parametrize(("total", "state"), [(90.0, "clear"), (90.01, "flagged")])
def test_client_total_cpu_threshold(total: float, state: str) -> None:
    verdicts = _hosts(window_repetition(), client(cpu_total_percent=[total] * 30))
    assert _named(verdicts, marks.CLIENT_BOUND).state == state


def test_cgroup_throttling_in_the_window_is_client_bound_and_no_quota_is_not_missing() -> None:
    throttled = [0] * 29 + [3]
    verdicts = _hosts(window_repetition(), client(throttled_periods=throttled))
    bound = _named(verdicts, marks.CLIENT_BOUND)
    assert bound.state == "flagged"
    assert bound.evidence[0].metric == "cgroup_throttled_periods"
    assert bound.evidence[0].intervals == [34]
    no_quota = _hosts(window_repetition(), client(throttled_periods=None))
    assert _named(no_quota, marks.CLIENT_BOUND).state == "clear"


def test_a_missing_sample_leaves_client_bound_undecided_never_clear() -> None:
    gaps: list[float | None] = [50.0] * 29 + [None]
    verdict = _named(_hosts(window_repetition(), client(cpu_total_percent=gaps)),
                     marks.CLIENT_BOUND)
    assert verdict.state == "undecided"
    assert "no cpu_total_percent sample in 1 of 30 intervals" in verdict.summary
    no_processes = _named(_hosts(window_repetition(), client(load_process_cpu={})),
                          marks.CLIENT_BOUND)
    assert no_processes.state == "undecided" and "no load process CPU" in no_processes.summary
    absent = _named(_hosts(window_repetition()), marks.CLIENT_BOUND)
    assert absent.state == "undecided" and "no metrics from client1" in absent.summary


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.floats(0.0, 100.0)), min_size=30, max_size=30))
def test_generated_cpu_series_flag_clear_or_undecided_as_the_rule_says(
    values: list[float | None]
) -> None:
    verdict = _named(_hosts(window_repetition(), client(cpu_total_percent=values)),
                     marks.CLIENT_BOUND)
    over = sum(1 for v in values if v is not None and v > 90.0)
    if over * 100 / 30 > 10:
        assert verdict.state == "flagged"
    elif None in values:
        assert verdict.state == "undecided"
    else:
        assert verdict.state == "clear"


def test_a_saturated_server_with_idle_clients_is_server_bound_good_news() -> None:
    at_threshold = _named(_hosts(window_repetition(), client(), server([90.0] * 30)),
                          marks.SERVER_BOUND)
    assert at_threshold.state == "flagged" and at_threshold.summary.startswith("good news")
    under = _named(_hosts(window_repetition(), client(), server([89.9] * 30)),
                   marks.SERVER_BOUND)
    assert under.state == "clear"
    quota = _named(_hosts(window_repetition(), client(), server([19.0] * 30, limit=0.2)),
                   marks.SERVER_BOUND)
    assert quota.state == "flagged" and quota.evidence[0].value == pytest.approx(95.0)


def test_a_server_whose_cgroup_ran_out_of_its_quota_is_server_bound_with_its_share() -> None:
    def judged(throttled: float, process: float = 16.0) -> Verdict:
        held = HostSeries(host="server", role="server", interval_indices=WINDOW, servers=[
            ServerSeries(host="server", target=None, interval_indices=WINDOW,
                         process_cpu=[process] * 30, cpu_limit_cores=0.2,
                         quota_throttled_percent=[throttled] * 30)])
        return _named(_hosts(window_repetition(), client(), held), marks.SERVER_BOUND)

    # the process had 80 % of the quota: the agent and sshd in its cgroup had the rest
    out = judged(100.0)
    assert out.state == "flagged" and out.evidence[0].metric.startswith("server_cgroup_thr")
    assert "used 80 % of the quota (median)" in out.summary
    assert judged(90.0).state == "flagged"
    assert judged(89.9).state == "clear"  # throttled in fewer periods: not at its limit
    at_limit = judged(0.0, process=19.0)  # the process alone says so: its own evidence
    assert at_limit.state == "flagged" and at_limit.evidence[0].metric.startswith("server_pro")


def test_server_bound_is_undecided_without_its_metrics_or_its_clients() -> None:
    unknown_limit = _named(_hosts(window_repetition(), client(), server([99.0] * 30, None)),
                           marks.SERVER_BOUND)
    assert unknown_limit.state == "undecided" and "can use is unknown" in unknown_limit.summary
    not_measured = _named(_hosts(window_repetition(), client(), server(None)),
                          marks.SERVER_BOUND)
    assert not_measured.state == "undecided"
    clients_unknown = _named(_hosts(window_repetition(), server([99.0] * 30)),
                             marks.SERVER_BOUND)
    assert clients_unknown.state == "undecided"


@pytest.mark.parametrize(("sent", "state"), [(112_500_000, "clear"), (112_500_001, "flagged")])
def test_an_interface_over_the_link_threshold_is_network_bound(sent: int, state: str) -> None:
    # 1000 Mbit/s for 1 s is 125 MB; 90 % of it is 112.5 MB
    series = client(interface_bytes={"eth0": [sent] * 30}, link_speed_mbps={"eth0": 1000},
                    retransmits=[0] * 30)
    assert _named(_hosts(window_repetition(), series), marks.NETWORK_BOUND).state == state


def test_network_bound_is_skipped_with_its_reason_when_the_link_speed_is_unknown() -> None:
    series = client(interface_bytes={"eth0": [1] * 30}, retransmits=[0] * 30)
    verdict = _named(_hosts(window_repetition(), series), marks.NETWORK_BOUND)
    assert verdict.state == "undecided"
    assert "eth0: link speed unknown, utilisation not judged" in verdict.summary
    retransmitting = client(interface_bytes={"eth0": [1] * 30}, retransmits=[0] * 29 + [2])
    flagged = _named(_hosts(window_repetition(), retransmitting), marks.NETWORK_BOUND)
    assert flagged.state == "flagged" and flagged.evidence[0].metric == "tcp_retransmits"


def test_without_host_series_every_host_verdict_is_undecided_no_metrics() -> None:
    judged = host_verdicts(window_repetition(), None, ["server"], 1.0, DEFAULTS)
    assert [v.name for v in judged] == ["client-bound", "server-bound", "network-bound"]
    assert all(v.state == "undecided" and NO_METRICS in v.summary for v in judged)


def open_repetition(behind: set[int], waiting: bool = False) -> Repetition:
    """client1's open loop over the window 5..34, behind its schedule in ``behind``: 12
    requests not sent and 400 of 990 late (up to 7.5 ms) there, every request on time
    elsewhere; ``waiting``: those requests were all queued behind unanswered ones."""
    intervals = []
    for i in range(35):
        data = interval(i, "warmup" if i < 5 else "measure")
        data["open_loop"] = ({"sent": 990, "late": 400, "lateness_max_usec": 7500,
                              "not_sent": 12, "lateness": "",
                              "late_waiting": 400 if waiting else 0,
                              "not_sent_waiting": 12 if waiting else 0,
                              "lateness_waiting": ""} if i in behind else
                             {"sent": 1000, "late": 0, "lateness_max_usec": 200,
                              "not_sent": 0, "lateness": "", "late_waiting": 0,
                              "not_sent_waiting": 0, "lateness_waiting": ""})
        intervals.append(data)
    return repetition_figures([report("client1", intervals)], WINDOW)


@pytest.mark.parametrize(("behind", "state"), [
    ({5, 6, 7}, "clear"),        # 3 of 30 = exactly 10 %
    ({5, 6, 7, 20}, "flagged"),
])
def test_an_open_loop_behind_its_schedule_is_client_bound_with_its_intervals(
    behind: set[int], state: str
) -> None:
    bound = _named(_hosts(open_repetition(behind), client(), server([50.0] * 30)),
                   marks.CLIENT_BOUND)
    assert bound.state == state, bound.summary
    if state == "flagged":
        (evidence,) = bound.evidence
        assert evidence.metric == "behind_schedule" and evidence.host == "client1"
        assert evidence.intervals == [5, 6, 7, 20]
        assert evidence.value == pytest.approx(4 * 100 / 30)
        assert evidence.threshold == DEFAULTS.saturated_intervals_percent
        assert ("open-loop schedule behind in 4 of 30 intervals (interval 5: 12 not sent, "
                "400 of 990 late, up to 7.5 ms late" in bound.summary)
        assert bound.summary.startswith("client1 was the bottleneck: ")


def test_an_open_loop_behind_its_schedule_is_client_bound_without_host_metrics() -> None:
    bound = _named(_hosts(open_repetition(set(range(5, 35))), server([50.0] * 30)),
                   marks.CLIENT_BOUND)
    assert bound.state == "flagged"
    assert [e.metric for e in bound.evidence] == ["behind_schedule"]


def test_a_schedule_behind_while_the_server_was_saturated_is_the_server_s_not_the_client_s(
) -> None:
    verdicts = _hosts(open_repetition(set(range(5, 35))), client(), server([95.0] * 30))
    assert _named(verdicts, marks.CLIENT_BOUND).state == "clear"
    assert _named(verdicts, marks.SERVER_BOUND).state == "flagged"


def test_requests_queued_behind_a_stalled_server_are_not_the_clients_evidence() -> None:
    """A server that stops answering (a ``CLIENT PAUSE``, a fork) leaves every connection
    awaiting its reply: the requests due meanwhile go out late, which the latencies show
    (they count from the intended time), but the client was not the bottleneck."""
    stalled = open_repetition(set(range(5, 35)), waiting=True)
    assert all(i.behind_schedule and not i.loop_behind
               for i in stalled.agents[0].intervals if i.in_window)
    bound = _named(_hosts(stalled, client(), server([50.0] * 30)), marks.CLIENT_BOUND)
    assert bound.state == "clear" and bound.evidence == [], bound.summary


def test_a_schedule_partly_behind_the_server_names_what_waited() -> None:
    # 400 late, 100 of them behind unanswered requests
    repetition = windowed(open_repetition(set(range(5, 35))), late_waiting=100)
    bound = _named(_hosts(repetition, client(), server([50.0] * 30)), marks.CLIENT_BOUND)
    assert bound.state == "flagged"
    assert ("interval 5: 12 not sent, 400 of 990 late (100 of them waiting on the server), "
            "up to 7.5 ms late" in bound.summary), bound.summary


def test_an_older_document_without_the_split_reads_its_schedule_as_before() -> None:
    repetition = windowed(open_repetition(set(range(5, 35))), late_waiting=None,
                          not_sent_waiting=None, loop_behind=None)
    bound = _named(_hosts(repetition, client(), server([50.0] * 30)), marks.CLIENT_BOUND)
    assert bound.state == "flagged"


def windowed(repetition: Repetition, **update: object) -> Repetition:
    """``repetition`` with its agent's window intervals updated."""
    (agent,) = repetition.agents
    intervals = [r.model_copy(update=update) if r.in_window else r for r in agent.intervals]
    return repetition.model_copy(
        update={"agents": [agent.model_copy(update={"intervals": intervals})]})


def test_a_closed_loop_or_a_schedule_kept_adds_no_schedule_evidence() -> None:
    for kept in (window_repetition(), open_repetition(set())):
        bound = _named(_hosts(kept, client(), server([50.0] * 30)), marks.CLIENT_BOUND)
        assert bound.state == "clear" and bound.evidence == []


# --------------------------------------------------------------------------------------------
# the repetition, the run, --strict


def test_every_verdict_is_registered_and_flagged_ones_become_marks() -> None:
    short = repetition([100] * 5, skew_ns=2_000_000)
    judged = repetition_verdicts(short, interval_s=1.0, error_threshold=0.01,
                                 thresholds=DEFAULTS, hosts=None)
    assert [v.name for v in judged] == [k.name for k in marks.VERDICTS if k.scope == "repetition"]
    assert all(marks.MARKS[v.name].verdict for v in judged)
    assert flagged_marks(judged) == ["skewed-start", "too-short"]


def test_the_run_judges_throughput_across_repetitions_and_summarises_each_kind() -> None:
    def judged(counts: list[int], index: int, skew_ns: int = 0) -> Repetition:
        rep = repetition(counts, index=index, skew_ns=skew_ns)
        return rep.with_verdicts(repetition_verdicts(rep, interval_s=1.0, error_threshold=0.01,
                                                     thresholds=DEFAULTS, hosts=None), [])

    steady = [judged([100] * 12, 1), judged([100] * 12, 2), judged([100] * 12, 3)]
    across = run_verdicts(steady, DEFAULTS)
    assert across[0].name == "unstable-across-repetitions" and across[0].state == "clear"
    wobbly = [judged([90] * 12, 1), judged([100] * 12, 2), judged([110] * 12, 3, 5_000_000)]
    summary = run_verdicts(wobbly, DEFAULTS)
    assert summary[0].state == "flagged" and summary[0].evidence[0].value == pytest.approx(10.0)
    skew = next(v for v in summary if v.name == "skewed-start")
    assert skew.state == "flagged" and skew.repetitions == [3]
    assert run_verdicts(steady[:1], DEFAULTS)[0].state == "undecided"
    failures = strict_failures(wobbly, summary)
    assert failures[0].startswith("repetition 3: skewed-start: the clients started 5.000 ms")
    assert failures[-1].startswith("run: unstable-across-repetitions: ")
    assert len(failures) == 2
    assert strict_failures(steady, across) == []


def test_a_flagged_verdict_that_is_not_strict_does_not_fail_strict() -> None:
    rep = repetition([100] * 3)
    judged = rep.with_verdicts(repetition_verdicts(rep, interval_s=1.0, error_threshold=0.01,
                                                   thresholds=DEFAULTS, hosts=None), [])
    assert "too-short" in flagged_marks(judged.verdicts)
    assert strict_failures([judged], []) == []


def test_throughput_points_sum_every_agent_in_the_window() -> None:
    one = [interval(i, commands={"GET": command([100] * (i + 1))}) for i in range(3)]
    two = [interval(i, commands={"GET": command([100] * 2)}) for i in range(3)]
    rep = repetition_figures([report("a", one), report("b", two)], [0, 1, 2])
    assert throughput_points(rep) == [(0, 3.0), (1, 4.0), (2, 5.0)]


def test_thresholds_are_validated_like_every_inventory_field() -> None:
    with pytest.raises(ValueError, match="less than or equal to 100"):
        thresholds(cov_percent=101.0)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        thresholds(min_intervals=0)


def judged_document(skew_ns: int) -> ResultsDocument:
    """A finished, judged two-repetition document; the second started ``skew_ns`` apart."""
    document = new_document(load_inventory(EXAMPLE).inventory, [])
    done: list[Repetition] = []
    for index in (1, 2):
        rep = repetition([100] * 12, index=index, skew_ns=skew_ns if index == 2 else 0)
        judged = repetition_verdicts(rep, interval_s=1.0, error_threshold=0.01,
                                     thresholds=DEFAULTS, hosts=None)
        done.append(rep.with_verdicts(judged, flagged_marks(judged)))
        document = document.with_repetition(done[-1], aggregate(done))
    return document.with_verdicts(run_verdicts(done, DEFAULTS)).finish("complete")


@pytest.mark.parametrize(("skew_ns", "status"), [(5_000_000, 3), (0, 0)])
def test_coord_run_strict_exits_3_naming_each_failing_verdict(
    skew_ns: int, status: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's wiring only: the run itself is replaced by its finished document (whole runs
    with --strict's check are in tests/integration/test_local_run.py)."""
    document = judged_document(skew_ns)
    monkeypatch.setattr(cli, "run_benchmark",
                        lambda *args, **kwargs: RunOutcome(tmp_path, document))
    try:
        cli._main(["run", "-i", str(EXAMPLE), "--out", str(tmp_path / "out"), "--strict"])
        code: object = 0
    except SystemExit as exited:
        code = exited.code
    assert code == status
    captured = capsys.readouterr()
    assert captured.out.index("verdicts") < captured.out.index("summary over 2 repetition")
    failing = [line for line in captured.err.splitlines() if line.startswith("--strict: ")]
    if status:
        assert failing == [line for line in failing if "repetition 2: skewed-start: " in line]
        assert len(failing) == 1
    else:
        assert failing == []
