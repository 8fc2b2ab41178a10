"""The hosts' stored metrics as the verdicts' series: over the v2 fixture (real sampler output)
and hand-built hosts (a quota, a quota not read, a host with both roles, a process that
exits, link speeds from the platform). Pure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coordinator.core import marks
from coordinator.core.host_series import all_host_series, host_series
from coordinator.core.host_verdicts import HostSeries, ServerSeries, host_verdicts, window_indices
from coordinator.core.metrics import HostMetrics
from coordinator.core.platform import PlatformRecord
from coordinator.core.verdict_records import Verdict
from coordinator.inventory.schema import Thresholds
from coordinator.results import load_results
from tests.unit.test_verdicts import repetition

FIXTURE_V2 = Path(__file__).parents[2] / "tests" / "fixtures" / "results-v2.json"
DEFAULTS = Thresholds()


def cpu(busy: float) -> dict[str, float]:
    return {"user": busy, "system": 0.0, "irq": 0.0, "softirq": 0.0, "steal": 0.0,
            "iowait": 0.0, "idle": 100.0 - busy, "busy": busy}


def process(pid: int, percent: float, name: str = "python",
            thread: float | None = None) -> dict[str, Any]:
    return {"pid": pid, "name": name, "cpu_percent": percent, "threads": 1,
            "hottest_thread": pid, "hottest_thread_percent": percent if thread is None else thread}


def interval(index: int, *, busy: float = 50.0, load: list[dict[str, Any]] | None = None,
             server: list[dict[str, Any]] | None = None, throttled: int | None = None,
             quota: float = 0.2, sent: int = 1000, received: int = 4000,
             retransmits: int | None = 0, missing: dict[str, str] | None = None,
             cores: int = 1) -> dict[str, Any]:
    throttling = None if throttled is None else {
        "cgroup": "/sys/fs/cgroup/cpu/lab/client1", "version": "v1", "quota_cores": quota,
        "periods": 10, "throttled_periods": throttled, "throttled_usec": throttled * 80_000}
    traffic = {"bytes_received": received, "bytes_sent": sent, "packets_received": 4,
               "packets_sent": 1}
    return {
        "index": index, "phase": "before" if index < 0 else "measure",
        "start_ms": 500.0 * index, "duration_ms": 500.0, "cpu": cpu(busy),
        "cores": [cpu(busy)] * cores,
        "load_average_1m": 0.5, "memory_used_bytes": 1, "memory_available_bytes": 1,
        "interfaces": {"eth0": traffic, "lo": {**traffic, "bytes_sent": 10**9}},
        "tcp_retransmits": retransmits, "listen_drops": 0, "listen_overflows": 0,
        "context_switches": 1, "throttling": throttling, "load_processes": load or [],
        "server_processes": server or [], "missing": missing or {},
    }  # fmt: skip


def host(intervals: list[dict[str, Any]], roles: list[str] | None = None,
         name: str = "client1", missing: dict[str, str] | None = None) -> HostMetrics:
    return HostMetrics.model_validate({
        "host": name, "roles": roles or ["client"], "interval_ms": 500.0,
        "intervals": intervals, "redis_info": [], "missing": missing or {}})  # fmt: skip


def only_server(series: HostSeries) -> ServerSeries:
    """The one target server of a host that runs one."""
    (server,) = series.servers or ()
    return server


def platform(speed: int | None) -> PlatformRecord:
    host_record = {
        "host": "client1", "hostname": "c1", "cpu_model": None, "sockets": None, "cores": None,
        "threads": None, "numa_nodes": None, "governor": None, "boost": None,
        "memory_bytes": None, "kernel": "Linux", "os_release": None, "virtualization": None,
        "dmi_vendor": None, "dmi_product": None, "cpu_quota_cores": None, "cpu_cgroup": None,
        "clock_source": None, "python": "3.11", "tools": [], "unknown": {},
        "interfaces": [{"name": "eth0", "speed_mbps": speed, "mtu": 1500, "driver": None,
                        "offloads": None, "unknown": {}}],
    }  # fmt: skip
    return PlatformRecord.model_validate({"hosts": [host_record], "servers": []})


# --------------------------------------------------------------------------------------------
# the v2 fixture: real sampler output


def test_the_v2_fixtures_hosts_become_series_of_their_load_intervals() -> None:
    document = load_results(FIXTURE_V2)
    (first, *_) = document.repetitions
    window = window_indices(first)
    assert window == [2, 3]
    series = {s.host: s for s in all_host_series(first.metrics, window, document.platform)}
    assert sorted(series) == ["client1", "client2", "server1"]
    client = series["client1"]
    assert client.role == "client" and list(client.interval_indices) == [0, 1, 2, 3, 4, 5]
    assert list(client.cpu_total_percent) == [100.0] * 6
    # the agent's two descendants, named by their rank in pid order
    assert sorted(client.load_process_cpu) == ["1 (redis-server, pid 2305)",
                                               "2 (python, pid 2319)"]
    python = client.load_process_cpu["2 (python, pid 2319)"]
    assert python[2] == pytest.approx(44.67121175941222)
    assert client.hottest_thread_cpu[0] == pytest.approx(40.57760878935028)
    assert client.throttled_periods is None  # no quota on the host, nothing missing
    assert list(client.retransmits) == [0] * 6
    assert sorted(client.interface_bytes) == ["eth0"]  # the loopback left out
    assert client.link_speed_mbps == {}  # the fixture has no platform description
    assert client.servers is None
    server = series["server1"]
    assert server.role == "server" and server.load_process_cpu == {}
    assert list(only_server(server).process_cpu) == [0.0] * 6
    assert only_server(server).cpu_limit_cores == 1.0


def test_the_v2_fixtures_host_verdicts_are_decided_from_its_metrics() -> None:
    document = load_results(FIXTURE_V2)
    first = document.repetitions[0]
    series = all_host_series(first.metrics, window_indices(first), None)
    judged = {(v.name, tuple(v.hosts)): v
              for v in host_verdicts(first, series, ["server1"], 0.25, DEFAULTS)}
    # the fixture's host was fully busy (a loaded shared machine): client-bound, with evidence
    client = judged[(marks.CLIENT_BOUND.name, ("client1",))]
    assert client.state == "flagged"
    assert client.evidence[0].metric == "cpu_total_percent"
    assert client.evidence[0].intervals == [2, 3]
    assert judged[(marks.SERVER_BOUND.name, ("server1",))].summary.startswith(
        "not server-bound: client1")
    network = judged[(marks.NETWORK_BOUND.name, ("client1",))]
    assert network.state == "undecided" and "link speed unknown" in network.summary
    assert "no metrics" not in " ".join(v.summary for v in judged.values())


# --------------------------------------------------------------------------------------------
# hand-built hosts


WINDOW = [0, 1, 2, 3]


def test_a_saturated_load_process_is_named_by_its_rank_and_flags_client_bound() -> None:
    intervals = [interval(-1), *[interval(i, load=[process(41, 99.0), process(40, 20.0)])
                                 for i in WINDOW]]
    series = host_series(host(intervals), WINDOW, None)
    assert list(series.interval_indices) == WINDOW  # before T0 left out
    assert dict(series.load_process_cpu) == {"1 (python, pid 40)": [20.0] * 4,
                                             "2 (python, pid 41)": [99.0] * 4}
    (verdict, *_) = host_verdicts(repetition([100] * 4), [series], [], 0.5, DEFAULTS)
    assert verdict.state == "flagged"
    assert "load process 2 (python, pid 41) at 99 % of a core in 4 of 4 intervals" in (
        verdict.summary)


def test_a_process_seen_only_in_the_warmup_is_not_missing_from_the_window() -> None:
    intervals = [interval(0, load=[process(40, 20.0), process(39, 5.0)]),
                 *[interval(i, load=[process(40, 20.0)]) for i in (1, 2, 3)]]
    series = host_series(host(intervals), [1, 2, 3], None)
    assert dict(series.load_process_cpu) == {"1 (python, pid 40)": [20.0] * 4}


def test_a_process_that_exits_in_the_window_is_none_where_it_was_not_sampled() -> None:
    intervals = [interval(0, load=[process(40, 20.0), process(41, 30.0)]),
                 interval(1, load=[process(40, 20.0)])]
    series = host_series(host(intervals), [0, 1], None)
    assert series.load_process_cpu["2 (python, pid 41)"] == [30.0, None]
    assert list(series.hottest_thread_cpu) == [30.0, 20.0]


def test_a_quota_gives_throttled_periods_and_the_throttling_flags_client_bound() -> None:
    intervals = [interval(i, load=[process(40, 19.0)], throttled=5) for i in WINDOW]
    series = host_series(host(intervals), WINDOW, None)
    assert list(series.throttled_periods or []) == [5, 5, 5, 5]
    (verdict, *_) = host_verdicts(repetition([100] * 4), [series], [], 0.5, DEFAULTS)
    assert verdict.state == "flagged"
    assert [e.metric for e in verdict.evidence] == ["cgroup_throttled_periods"]


def test_without_a_quota_there_is_no_throttling_to_judge() -> None:
    series = host_series(host([interval(i, load=[process(40, 19.0)]) for i in WINDOW]),
                         WINDOW, None)
    assert series.throttled_periods is None
    (verdict, *_) = host_verdicts(repetition([100] * 4), [series], [], 0.5, DEFAULTS)
    assert verdict.state == "clear"


@pytest.mark.parametrize("where", ["host", "interval"])
def test_a_quota_not_read_leaves_client_bound_undecided(where: str) -> None:
    reason = {"throttling": "no cgroup filesystem is mounted"}
    intervals = [interval(i, load=[process(40, 19.0)],
                          missing=reason if where == "interval" else None) for i in WINDOW]
    series = host_series(host(intervals, missing=reason if where == "host" else None),
                         WINDOW, None)
    assert series.throttled_periods == []
    (verdict, *_) = host_verdicts(repetition([100] * 4), [series], [], 0.5, DEFAULTS)
    assert verdict.state == "undecided"
    assert "cgroup_throttled_periods" in verdict.summary


def test_a_host_with_both_roles_is_judged_as_a_client_and_as_the_server() -> None:
    intervals = [interval(i, load=[process(40, 30.0)], server=[process(7, 99.0, "redis-server")])
                 for i in WINDOW]
    series = host_series(host(intervals, roles=["client", "server"]), WINDOW, None)
    assert series.role == "client" and list(series.load_process_cpu) == ["1 (python, pid 40)"]
    assert list(only_server(series).process_cpu) == [99.0] * 4
    assert only_server(series).cpu_limit_cores == 1.0
    judged = host_verdicts(repetition([100] * 4), [series], ["client1"], 0.5, DEFAULTS)
    states = {v.name: v.state for v in judged}
    assert states[marks.CLIENT_BOUND.name] == "clear"
    assert states[marks.SERVER_BOUND.name] == "flagged"


def test_the_server_limit_is_one_core_or_its_quota_if_smaller() -> None:
    def limit(quota: float | None, missing: dict[str, str] | None = None) -> float | None:
        intervals = [interval(i, server=[process(7, 19.5, "redis-server")],
                              throttled=None if quota is None else 0, quota=quota or 0.0)
                     for i in WINDOW]
        return only_server(host_series(host(intervals, ["server"], "server", missing),
                                       WINDOW, None)).cpu_limit_cores

    assert limit(None) == 1.0
    assert limit(0.2) == 0.2
    assert limit(4.0) == 1.0  # Redis runs its commands on one thread
    assert limit(None, {"throttling": "not mounted"}) is None  # maybe held below a core


def prefork(workers: float, *, cores: int, quota: float | None = None) -> HostMetrics:
    """A pre-fork server (Gunicorn): an idle master (pid 10) and 4 workers at ``workers`` %
    of a core each, on a host of ``cores`` cores."""
    processes = [process(10, 0.4, "gunicorn"),
                 *(process(11 + n, workers, "gunicorn") for n in range(4))]
    return host([interval(i, server=processes, cores=cores, quota=quota or 0.0,
                          throttled=None if quota is None else 0) for i in WINDOW],
                ["server"], "server")


@pytest.mark.parametrize(("cores", "quota", "limit"), [
    (8, None, 4.0), (2, None, 2.0), (8, 1.5, 1.5), (1, None, 1.0)])
def test_a_prefork_server_can_use_a_core_per_busy_worker(
    cores: int, quota: float | None, limit: float
) -> None:
    """Each busy worker runs on a core of its own; the master, which only watches them, does
    none of the work; the host's cores and a quota bound it."""
    series = host_series(prefork(60.0, cores=cores, quota=quota), WINDOW, None)
    assert only_server(series).cpu_limit_cores == limit
    assert (only_server(series).quota_throttled_percent is not None) == (quota is not None)


def test_a_prefork_server_with_idle_cores_is_not_server_bound_and_one_at_them_is() -> None:
    """4 workers at 60 % of a core on 8 cores have room (one core's worth of them would be
    judged saturated); at 95 % each they are the bottleneck."""
    client = host([interval(i, busy=10.0, load=[process(40, 10.0)]) for i in WINDOW])

    def server_bound(workers: float) -> Verdict:
        series = all_host_series([client, prefork(workers, cores=8)], WINDOW, None)
        judged = host_verdicts(repetition([100] * 4), series, ["server"], 0.5, DEFAULTS)
        return next(v for v in judged if v.name == marks.SERVER_BOUND.name)

    assert server_bound(60.0).state == "clear"
    bound = server_bound(95.0)
    assert bound.state == "flagged" and "of its 4 core(s)" in bound.summary


def test_a_server_limited_by_a_quota_keeps_the_share_of_periods_throttled() -> None:
    def throttled(quota: float) -> list[float | None] | None:
        intervals = [interval(i, server=[process(7, 16.0, "redis-server")], throttled=9,
                              quota=quota) for i in WINDOW]
        return only_server(host_series(host(intervals, ["server"], "server"),
                                       WINDOW, None)).quota_throttled_percent

    assert throttled(0.2) == [90.0] * len(WINDOW)  # 9 of 10 periods
    assert throttled(4.0) is None  # the single thread is the limit, not the quota


def test_a_server_at_its_quota_with_idle_clients_is_server_bound() -> None:
    server = host([interval(i, server=[process(7, 19.5, "redis-server")], throttled=3)
                   for i in WINDOW], ["server"], "server")
    client = host([interval(i, busy=10.0, load=[process(40, 10.0)]) for i in WINDOW])
    series = all_host_series([client, server], WINDOW, None)
    judged = {v.name: v for v in host_verdicts(repetition([100] * 4), series, ["server"], 0.5,
                                               DEFAULTS)}
    assert judged[marks.CLIENT_BOUND.name].state == "clear"
    bound = judged[marks.SERVER_BOUND.name]
    assert bound.state == "flagged" and bound.summary.startswith("good news")
    assert "of its 0.2 core(s)" in bound.summary


def test_an_unsampled_host_is_left_out_so_its_verdicts_say_no_metrics() -> None:
    empty = HostMetrics.model_validate({
        "host": "client1", "roles": ["client"], "interval_ms": 500.0, "intervals": [],
        "redis_info": [], "missing": {"all": "agent lost"}})  # fmt: skip
    assert all_host_series([empty], WINDOW, None) == []
    (verdict, *_) = host_verdicts(repetition([100] * 4), [], [], 0.5, DEFAULTS)
    assert verdict.summary == "undecided: no metrics from client1"


def test_interfaces_take_the_busier_direction_and_the_platforms_link_speed() -> None:
    intervals = [interval(i, sent=10, received=60_000_000) for i in WINDOW]
    series = host_series(host(intervals), WINDOW, platform(1000))
    assert dict(series.interface_bytes) == {"eth0": [60_000_000] * 4}
    assert dict(series.link_speed_mbps) == {"eth0": 1000}
    judged = host_verdicts(repetition([100] * 4), [series], [], 0.5, DEFAULTS)
    network = next(v for v in judged if v.name == marks.NETWORK_BOUND.name)
    # 60 MB in 0.5 s = 960 Mbit/s of a 1000 Mbit/s link
    assert network.state == "flagged" and "96 % of 1000 Mbit/s" in network.summary
    assert host_series(host(intervals), WINDOW, platform(None)).link_speed_mbps == {
        "eth0": None}


def test_retransmits_not_read_stay_none() -> None:
    series = host_series(host([interval(0, retransmits=None), interval(1, retransmits=3)]),
                         [0, 1], None)
    assert list(series.retransmits) == [None, 3]


def test_busy_polling_is_left_out_of_the_client_bound_cpu_figures() -> None:
    polling = {**process(40, 99.0, thread=98.0), "busy_poll_percent": 70.0}
    other = {**process(41, 30.0, thread=25.0), "hottest_thread": 4242,
             "busy_poll_percent": 20.0}  # its hottest thread is not the polling one
    intervals = [interval(i, busy=80.0, load=[polling, other]) for i in WINDOW]
    intervals = [{**item, "cores": [cpu(80.0), cpu(80.0)]} for item in intervals]
    series = host_series(host(intervals), WINDOW, None)
    assert dict(series.load_process_cpu) == {"1 (python, pid 40)": [29.0] * 4,
                                             "2 (python, pid 41)": [10.0] * 4}
    assert list(series.hottest_thread_cpu) == [pytest.approx(28.0)] * 4
    assert list(series.cpu_total_percent) == [pytest.approx(80.0 - 90.0 / 2)] * 4
    (verdict, *_) = host_verdicts(repetition([100] * 4), [series], [], 0.5, DEFAULTS)
    assert verdict.name == "client-bound"
    assert verdict.state == "clear", verdict.summary


def test_without_busy_polling_the_cpu_figures_are_as_sampled() -> None:
    counted_zero = {**process(40, 99.0), "busy_poll_percent": 0.0}
    intervals = [interval(i, busy=97.0, load=[counted_zero]) for i in WINDOW]
    series = host_series(host(intervals), WINDOW, None)
    assert dict(series.load_process_cpu) == {"1 (python, pid 40)": [99.0] * 4}
    assert list(series.hottest_thread_cpu) == [99.0] * 4
    assert list(series.cpu_total_percent) == [97.0] * 4
    (verdict, *_) = host_verdicts(repetition([100] * 4), [series], [], 0.5, DEFAULTS)
    assert verdict.state == "flagged"


def two_servers(redis: float, workers: float, *, ports: bool = True) -> HostMetrics:
    """A host running two targets: Redis on 6379 at ``redis`` % of a core, and a pre-fork
    model server on 8000 (an idle master, 2 workers at ``workers`` % each), on 4 cores."""
    def listening(record: dict[str, Any], port: int) -> dict[str, Any]:
        return {**record, "ports": [port] if ports else []}

    processes = [listening(process(7, redis, "redis-server"), 6379),
                 listening(process(10, 0.4, "gunicorn"), 8000),
                 *(listening(process(11 + n, workers, "gunicorn"), 8000) for n in range(2))]
    return host([interval(i, server=processes, cores=4) for i in WINDOW], ["server"], "server")


TARGETS = {6379: "redis", 8000: "model"}


def test_two_servers_on_one_host_are_each_judged_on_their_own_processes() -> None:
    """Summed, a saturated Redis beside a half-idle model server read as 159 % of 3 cores:
    room to spare. Each on its own: Redis at its one core, the model server at 60 of 200 %."""
    series = host_series(two_servers(99.0, 30.0), WINDOW, None, TARGETS)
    redis, model = series.servers or ()
    assert (redis.target, redis.cpu_limit_cores, list(redis.process_cpu)) == (
        "redis", 1.0, [99.0] * 4)
    assert (model.target, model.cpu_limit_cores, list(model.process_cpu)) == (
        "model", 2.0, [pytest.approx(60.4)] * 4)
    client = host([interval(i, busy=10.0, load=[process(40, 10.0)]) for i in WINDOW])
    judged = [v for v in host_verdicts(repetition([100] * 4),
                                       all_host_series([client, two_servers(99.0, 30.0)],
                                                       WINDOW, None, {"server": TARGETS}),
                                       ["server"], 0.5, DEFAULTS)
              if v.name == marks.SERVER_BOUND.name]
    assert [v.state for v in judged] == ["flagged", "clear"]
    assert judged[0].summary.startswith("good news: the server redis on server was the bottle")
    assert "redis's processes at 99 % of its 1 core(s)" in judged[0].summary
    assert judged[1].summary.startswith("the server model on server had CPU to spare")
    assert all(v.hosts == ["server"] for v in judged)


def test_a_host_whose_processes_ports_were_not_recorded_keeps_one_server() -> None:
    """Results written before the agents recorded the ports: every server process summed,
    as before (a host running one target is judged the same either way)."""
    (alone,) = host_series(two_servers(99.0, 30.0, ports=False), WINDOW, None,
                           TARGETS).servers or ()
    assert alone.target is None and alone.cpu_limit_cores == 3.0
    assert list(alone.process_cpu) == [pytest.approx(159.4)] * 4
    (one,) = host_series(two_servers(99.0, 30.0), WINDOW, None, {6379: "redis"}).servers or ()
    assert one.target is None and one.name == "the server on server"


def threaded(cpu_percent: float, busy_threads: int, hottest: float, *,
             cores: int = 8) -> HostMetrics:
    """One multi-threaded server process (Dragonfly, memcached, Redis with io-threads) using
    ``cpu_percent`` of a core over ``busy_threads`` threads doing work, its busiest at
    ``hottest`` % of a core, on ``cores`` cores."""
    record = {**process(7, cpu_percent, "server", thread=hottest), "busy_threads": busy_threads}
    return host([interval(i, server=[record], cores=cores) for i in WINDOW], ["server"], "server")


def judged_server(metrics: HostMetrics) -> Verdict:
    client = host([interval(i, busy=10.0, load=[process(40, 10.0)]) for i in WINDOW])
    judged = host_verdicts(repetition([100] * 4), all_host_series([client, metrics], WINDOW,
                                                                   None),
                           ["server"], 0.5, DEFAULTS)
    return next(v for v in judged if v.name == marks.SERVER_BOUND.name)


def test_a_multi_threaded_server_can_use_a_core_per_busy_thread() -> None:
    """8 threads at half a core each on 8 cores (Dragonfly at half load): 400 % of a core is
    half of what it can use, not four times its one core; all 8 at 95 % are its limit."""
    assert only_server(host_series(threaded(400.0, 8, 50.0), WINDOW, None)).cpu_limit_cores == 8
    assert judged_server(threaded(400.0, 8, 50.0)).state == "clear"
    assert judged_server(threaded(760.0, 8, 95.0)).state == "flagged"
    assert only_server(host_series(threaded(400.0, 8, 50.0, cores=4), WINDOW,
                                   None)).cpu_limit_cores == 4


def test_a_saturated_main_thread_is_server_bound_whatever_the_other_threads_do() -> None:
    """Redis with 4 io-threads on 8 cores: 250 % of a core over 4 busy threads is far from
    their 4 cores, but its main thread, which executes every command, is at its core's
    limit: the server is the bottleneck."""
    bound = judged_server(threaded(250.0, 4, 99.0))
    assert bound.state == "flagged"
    assert bound.evidence[0].metric == "server_hottest_thread_cpu_percent"
    assert "the server's busiest thread at 99 % of a core" in bound.summary
