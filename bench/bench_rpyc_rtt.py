"""RPyC round trip to each agent through its SSH forward (a paramiko direct-tcpip channel).

``--calls`` ``AgentLink.heartbeat()`` calls per agent (all of coord's link: rpyc request, the
agent's method, the plain-data check), one at a time. Anchor, measured in the same run and on
the same mechanism: a raw Redis ``PING`` (RESP bytes, no client library) through a
direct-tcpip channel of the server host's own SSH connection to its redis-server. The ratio
heartbeat / PING is what RPyC and the agent add to a bare round trip through the forward.

Calls are interleaved in blocks (PING block, then each agent's block, repeated), so a burst of
noise on this shared machine hits every path alike. ``--no-gc`` turns the coordinator's garbage
collector off while measuring: a full collection of the coordinator's heap is a pause of about
15 ms that lands on whichever call is running (the ``max`` column).

No target is set for this figure (issue 3 asks for median and p99). The script checks a budget
derived from design §7: an offset's uncertainty is half its round trip, and the start skew
across agents must stay within 1 ms, so half the median round trip should be <= 1 ms.

    sudo .venv/bin/python bench/bench_rpyc_rtt.py [--calls 2000] [--clients 2]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

import paramiko
from _lab import (
    BenchError,
    deploy_options,
    header,
    lab,
    median,
    note,
    parser,
    percentile,
    ratio,
    run_main,
    running_fleet,
    table,
    us,
    verdict,
)

from coordinator.inventory.schema import Inventory
from coordinator.inventory.server_auth import target_password
from coordinator.remote.deploy import DeployOptions

PING = b"*1\r\n$4\r\nPING\r\n"
PONG = b"+PONG\r\n"
SKEW_BUDGET_S = 1e-3


class RedisPing:
    """Raw RESP PING over a channel (a paramiko direct-tcpip channel here)."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self.channel = channel

    def authenticate(self, password: str | None) -> None:
        """AUTH once before timing anything (the lab's Redis asks for a password)."""
        if password is not None:
            secret = password.encode()
            self._exchange(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret),
                           b"+OK\r\n", "AUTH")

    def __call__(self) -> None:
        self._exchange(PING, PONG, "PING")

    def _exchange(self, request: bytes, expected: bytes, what: str) -> None:
        channel = self.channel
        channel.sendall(request)
        answer = b""
        while len(answer) < len(expected):
            chunk = channel.recv(64)
            if not chunk:
                raise BenchError("redis closed the forwarded connection")
            answer += chunk
        if answer != expected:
            raise BenchError(f"redis answered {answer!r} to {what}")


def timed(call: Callable[[], object], count: int, into: list[float]) -> None:
    for _ in range(count):
        started = time.perf_counter_ns()
        call()
        into.append((time.perf_counter_ns() - started) / 1e9)


def measure(inventory: Inventory, options: DeployOptions, calls: int, warmup: int,
            block: int, no_gc: bool) -> None:
    server = inventory.servers[0]
    server_host = inventory.host(server.host)
    with running_fleet(inventory, options) as fleet:
        sessions = {h.name: fleet.sessions[h.name] for h in inventory.hosts}
        channel = sessions[server_host.name].ssh.open_channel(server.port, server_host.address)
        try:
            ping = RedisPing(channel)
            ping.authenticate(target_password(inventory))
            paths: dict[str, Callable[[], object]] = {
                f"redis PING, forward to {server_host.name}": ping,
                **{f"heartbeat(), agent on {name}": s.link.heartbeat
                   for name, s in sessions.items()},
            }
            samples: dict[str, list[float]] = {label: [] for label in paths}
            note(f"warm-up: {warmup} calls per path")
            for call in paths.values():
                timed(call, warmup, [])
            note(f"measuring: {calls} calls per path, in blocks of {block}")
            if no_gc:
                gc.collect()
                gc.disable()
            done = 0
            while done < calls:
                count = min(block, calls - done)
                for label, call in paths.items():
                    timed(call, count, samples[label])
                done += count
        finally:
            gc.enable()
            channel.close()
        clocks = {name: s.clock for name, s in sessions.items()}

    anchor_label = next(iter(paths))
    anchor = median(samples[anchor_label])
    rows = []
    for label, values in samples.items():
        rows.append([label, len(values), us(min(values)), us(median(values)),
                     us(percentile(values, 90)), us(percentile(values, 99)), us(max(values)),
                     ratio(median(values), anchor), ratio(percentile(values, 99),
                                                          percentile(samples[anchor_label], 99))])
    table(["path", "calls", "min", "median", "p90", "p99", "max", "median ÷ PING",
           "p99 ÷ PING"], rows, title="round trips through the SSH forward:")
    table(["agent", "offset", "± uncertainty", "best rtt of 8"],
          [[name, f"{c.offset_ns / 1e3:+.0f} µs", f"{c.uncertainty_ns / 1e3:.0f} µs",
            f"{c.rtt_ns / 1e3:.0f} µs"] for name, c in clocks.items()],
          title="clock estimates made by Fleet.start() (8 clock() round trips, smallest kept):")

    heartbeats = [values for label, values in samples.items() if label != anchor_label]
    worst = max(median(values) for values in heartbeats)
    print("target: none set for the round trip itself (figure only)")
    verdict("derived budget, half the slowest agent's median round trip "
            "(offset uncertainty for the 1 ms start skew)", us(worst / 2),
            f"<= {us(SKEW_BUDGET_S)}", worst / 2 <= SKEW_BUDGET_S)


def run(args: argparse.Namespace) -> None:
    options = deploy_options(args)
    with lab(args.clients, args.lab_name, args.subnet) as (_, inventory):
        header(f"RPyC round trip through the SSH forward: {len(inventory.hosts)} agents, "
               f"{args.calls} calls each")
        if args.no_gc:
            print("the coordinator's garbage collector is off while measuring (--no-gc)\n")
        measure(inventory, options, args.calls, args.warmup, args.block, args.no_gc)


def main() -> int:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--clients", type=int, default=2, help="client hosts (plus one server)")
    cli.add_argument("--calls", type=int, default=2000, help="measured calls per path")
    cli.add_argument("--warmup", type=int, default=200, help="unmeasured calls per path first")
    cli.add_argument("--block", type=int, default=200,
                     help="calls per path before moving to the next path")
    cli.add_argument("--no-gc", action="store_true",
                     help="turn the coordinator's garbage collector off while measuring "
                          "(shows what its pauses add to the tail)")
    args = cli.parse_args()
    if min(args.calls, args.block) < 1 or args.warmup < 0:
        cli.error("--calls and --block must be at least 1, --warmup at least 0")
    return run_main(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
