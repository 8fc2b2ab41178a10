"""The live view of `coord run`: each client's CPU and its hottest load process, the server's
CPU, beside the verdict column, from the last interval each host's agent sampled. Pure."""

from __future__ import annotations

import dataclasses
import io

from rich.console import Console

from agent.messages import LoadProgress, LoadState
from agent.metrics.model import CpuShare, MetricsInterval, ProcessCpu
from coordinator.run.view import RunConsoleView, preload_line


def share(busy: float) -> CpuShare:
    return CpuShare(user=busy, system=0.0, irq=0.0, softirq=0.0, steal=0.0, iowait=0.0,
                    idle=100.0 - busy)


def process(pid: int, percent: float, name: str = "python3") -> ProcessCpu:
    return ProcessCpu(pid=pid, name=name, cpu_percent=percent, threads=1, hottest_thread=pid,
                      hottest_thread_percent=percent)


def sampled(busy: float, load: tuple[ProcessCpu, ...] = (),
            server: tuple[ProcessCpu, ...] = ()) -> MetricsInterval:
    return MetricsInterval(
        index=3, phase="measure", start_ns=0, end_ns=500_000_000, cpu=share(busy), cores=(),
        load_average_1m=None, memory_used_bytes=None, memory_available_bytes=None,
        interfaces={}, tcp_retransmits=None, listen_drops=None, listen_overflows=None,
        context_switches=None, throttling=None, load_processes=load, server_processes=server)


def rendered(hosts: dict[str, MetricsInterval]) -> str:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    view = RunConsoleView(console, ["client1", "client2", "server"])
    view.repetition(0, 2)
    running = LoadProgress(state=LoadState.RUNNING, interval=3, phase="measure",
                           ops_per_sec=1200.0, p99_usec=900.0)
    view.progress(1.5, 4.0, {"client1": running, "client2": running}, hosts)
    console.print(view._render())  # the live region, as it is drawn
    return out.getvalue()


def test_the_live_view_shows_each_clients_cpu_its_hottest_process_and_the_servers_cpu() -> None:
    text = rendered({
        "client1": sampled(97.0, (process(40, 12.0), process(41, 99.4))),
        "server": sampled(30.0, server=(process(7, 19.6, "redis-server"),)),
    })
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "cpu %" in text and "hottest process" in text and "verdict" in text
    client1 = [cell.strip() for cell in lines["client1"].split("│")]
    assert "97" in client1 and "load process 2: 99 % of a core" in client1
    client2 = [cell.strip() for cell in lines["client2"].split("│")]
    assert client2.count("-") >= 3  # not sampled yet: said so, nothing guessed
    server = [cell.strip() for cell in lines["server"].split("│")]
    assert "30" in server and "redis-server: 20 % of a core" in server


def test_a_server_host_running_two_targets_shows_each_process_with_its_ports() -> None:
    redis = dataclasses.replace(process(7, 99.0, "redis-server"), ports=(6379,))
    rest = dataclasses.replace(process(9, 31.0, "gunicorn"), ports=(8080, 8443))
    text = rendered({"server": sampled(60.0, server=(redis, rest))})
    assert "redis-server :6379: 99 % of a core, gunicorn :8080 :8443: 31 % of a core" in text


def test_a_busy_polling_process_shows_the_part_of_its_cpu_spent_polling() -> None:
    polling = ProcessCpu(pid=40, name="python3", cpu_percent=100.0, threads=1,
                         hottest_thread=40, hottest_thread_percent=100.0,
                         busy_poll_percent=71.6)
    text = rendered({"client1": sampled(60.0, (polling,))})
    assert "load process 1: 100 % of a core (72 % polling)" in text


def test_the_preload_shows_a_bar_with_keys_rate_and_time_left() -> None:
    assert preload_line("client1", 250_000, 1_000_000, 0.5) == (
        "preloading the keyspace from client1: 250,000/1,000,000 keys (25 %), 500,000 keys/s, "
        "2 s left")
    assert preload_line("client1", 0, 1000, 0.0).endswith("0 keys/s, - s left")
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    view = RunConsoleView(console, ["client1"])
    view.repetition(0, 1)
    view.progress(0.0, 0.0, {"client1": LoadProgress(state=LoadState.PREPARING,
                                                     preload_done=300, preload_total=1000)}, {})
    console.print(view._render())
    assert "preloading the keyspace from client1: 300/1,000 keys (30 %)" in out.getvalue()
