"""The netperf baseline over a started fleet: which pairs, netserver up, netperf per pair.

:func:`check_tools` asks every host of the baseline where its netperf / netserver are and fails
in one line naming the host and how to install them, before any load. :func:`measure` starts
netserver on every host that answers a pair (bound to its inventory address, on
``baseline.port``), runs each pair's iterations one pair at a time (pairs measured together
would measure each other), and stops every netserver it started, whatever happens: an error,
Ctrl-C. A pair that fails (no netserver, a netserver that died) is a row with its error; the
other pairs still report. Reading netperf's output is :mod:`coordinator.core.netperf`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from agent.messages import RunNetperf, StartNetserver
from coordinator.core.baselines import BaselinePair, pair_record
from coordinator.core.errors import AgentError, CoordError
from coordinator.core.netperf import NetperfFailed, RRFigures, parse_rr, parse_stream_mbps
from coordinator.inventory.schema import Host, Inventory
from coordinator.remote.fanout import fan_out
from coordinator.remote.fleet import Fleet

INSTALL_HINT = ("install it: apt-get install netperf (Debian: the netperf package is in the "
                "non-free component), or set hosts[].tool_path to where it is")


class BaselineToolMissing(CoordError):
    """A host of the baseline has no netperf or netserver: one line per host."""


@dataclass(frozen=True)
class Pair:
    """netperf on ``client`` towards the netserver of ``server`` at ``address``."""

    client: str
    server: str
    address: str


def baseline_address(inventory: Inventory, host: Host) -> str:
    """Where a host's netserver listens: the data address of the first server it runs (what
    the load connects to), else its inventory address."""
    for server in inventory.servers:
        if server.host == host.name:
            return inventory.data_address(server)
    return host.address


def baseline_pairs(inventory: Inventory) -> list[Pair]:
    """Every client to every server host (``pairs: clients-to-servers``), or every host to
    every other host (``pairs: all``), in inventory order."""
    if inventory.baseline.pairs == "all":
        sources, targets = inventory.hosts, inventory.hosts
    else:
        sources, targets = inventory.clients, inventory.server_hosts
    return [Pair(source.name, target.name, baseline_address(inventory, target))
            for source in sources for target in targets if source.name != target.name]


def rr_sizes(inventory: Inventory) -> tuple[int, int]:
    """TCP_RR request and response bytes: the inventory's, or the benchmark's value size."""
    baseline = inventory.baseline
    if not baseline.value_size_from_benchmark:
        return baseline.request_size, baseline.response_size
    bench = inventory.benchmark
    size = {"builtin": bench.builtin.value_size,
            "redis-benchmark": bench.redis_benchmark.value_size,
            "memtier": bench.memtier.data_size}[bench.driver]
    size = min(size, 65536)
    return size, size


def check_tools(fleet: Fleet, inventory: Inventory) -> None:
    """Every host of the baseline has what its part needs; else one line per host naming it
    and how to install netperf."""
    pairs = baseline_pairs(inventory)
    needs: dict[str, set[str]] = {}
    for pair in pairs:
        needs.setdefault(pair.client, set()).add("netperf")
        needs.setdefault(pair.server, set()).add("netserver")
    sessions = fleet.sessions
    found = fan_out(sorted(needs), lambda name, _: sessions[name].link.baseline_tools(
        inventory.host(name).tool_path))
    found.raise_for_failures()
    lines = []
    for name, tools in sorted(found.succeeded.items()):
        missing = [program for program in ("netperf", "netserver")
                   if program in needs[name] and getattr(tools, program) is None]
        if missing:
            lines.append(f"{name}: {' and '.join(missing)} not found on the agent's PATH "
                         f"({inventory.host(name).tool_path or 'its SSH session'}); "
                         f"{INSTALL_HINT}")
    if lines:
        raise BaselineToolMissing("; ".join(lines))


PairHook = Callable[[BaselinePair], None]


def measure(fleet: Fleet, inventory: Inventory, on_pair: PairHook | None = None) -> list[
        BaselinePair]:
    """Every pair's row, in order; ``on_pair`` is told each row as it is done."""
    pairs = baseline_pairs(inventory)
    rows = []
    with netservers(fleet, inventory, sorted({pair.server for pair in pairs})):
        for pair in pairs:
            row = measure_pair(fleet, inventory, pair)
            rows.append(row)
            if on_pair is not None:
                on_pair(row)
    return rows


@contextlib.contextmanager
def netservers(fleet: Fleet, inventory: Inventory, names: list[str]) -> Iterator[None]:
    """netserver running on the hosts ``names`` for the block, stopped after it whatever
    happens (a host whose netserver did not start fails the baseline, naming it)."""
    sessions, port = fleet.sessions, inventory.baseline.port

    def start(name: str, _: object) -> int:
        host = inventory.host(name)
        return sessions[name].link.start_netserver(StartNetserver(
            address=baseline_address(inventory, host), port=port, search_path=host.tool_path))

    try:
        started = fan_out(names, start)
        started.raise_for_failures()
        yield
    finally:
        stop_netservers(fleet, names)


def stop_netservers(fleet: Fleet, names: list[str]) -> None:
    """Stop the netserver on each host; a lost agent's netserver ends with the agent."""
    sessions = fleet.sessions
    fan_out(names, lambda name, _: sessions[name].link.stop_netserver())


def measure_pair(fleet: Fleet, inventory: Inventory, pair: Pair) -> BaselinePair:
    """A pair's iterations, stopped at its first failure (kept as the row's error)."""
    baseline, link = inventory.baseline, fleet.sessions[pair.client].link
    client = inventory.host(pair.client)
    sizes = rr_sizes(inventory)

    def request(test: str) -> RunNetperf:
        return RunNetperf(test=test, host=pair.address, port=baseline.port,
                          duration_s=int(baseline.duration), request_size=sizes[0],
                          response_size=sizes[1], local_address=client.load_source_address,
                          search_path=client.tool_path)

    iterations: list[RRFigures] = []
    error = stream_mbps = None
    try:
        for _ in range(baseline.iterations):
            result = link.run_netperf(request("TCP_RR"))
            iterations.append(parse_rr(result.output, _status(result.exit_status,
                                                               result.timed_out)))
        if baseline.stream:
            result = link.run_netperf(request("TCP_STREAM"))
            stream_mbps = parse_stream_mbps(result.output, _status(result.exit_status,
                                                                   result.timed_out))
    except NetperfFailed as exc:
        error = str(exc)
    except AgentError as exc:
        error = exc.reason
    return pair_record(pair.client, pair.server, pair.address, sizes, iterations,
                       error=error, stream_mbps=stream_mbps)


def _status(exit_status: int | None, timed_out: bool) -> int:
    if timed_out:
        raise NetperfFailed("netperf did not finish 30 s after its test's length (killed)")
    return -1 if exit_status is None else exit_status
