"""The http driver's requests per client core, next to wrk's. Target (issue 16): >= 0.5 of
wrk's requests per client CPU second.

Both load the same small endpoint from this host: a minimal keep-alive HTTP/1.1 server
(asyncio, one process, started here on a free loopback port, stopped on the way out) that
answers every request with the same 27-byte JSON body. Same connection count
(``--connections``, default 50), one client process / thread, alternating rounds
(``--rounds``, median reported):

- anchor: ``wrk -t1 -cN -dSs --latency http://127.0.0.1:PORT/score``; requests from its
  summary; CPU: its user + system time (``wait4``);
- the http driver (``agent.drivers.http_driver``, called directly, no agent): 1 process x N
  connections, a GET template, 1 s intervals, 1 s warm-up and ``--seconds`` measured; CPU:
  the load process's user + system time while it loads (read when it is reaped, minus its
  use at prepare), requests over every interval (as the CPU counts them).

Per client core = requests / client CPU seconds: the server shares the machine, so raw
requests/s are bounded by it; per-core figures compare the clients' own efficiency.
Also printed: the response parser's cost, httptools against h11 (bench_http_parser's figure).

    .venv/bin/python bench/bench_http_driver.py [--rounds 3] [--seconds 5]

Needs wrk on PATH (Debian: apt-get install wrk); no lab, no root.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _driver_cpu import run_load

from agent.drivers.http_driver import HttpDriver

SERVER = r"""
import asyncio, sys
BODY = b'{"score": 0.12345, "ok": 1}'
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(BODY)) + BODY
class Answer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.pending = transport, b""
    def data_received(self, data):
        data = self.pending + data
        count = data.count(b"\r\n\r\n")
        self.pending = data[data.rfind(b"\r\n\r\n") + 4:] if count else data
        if count:
            self.transport.write(RESPONSE * count)
async def main():
    server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


@dataclass(frozen=True)
class Sample:
    requests: int
    cpu_s: float
    wall_s: float

    @property
    def per_core(self) -> float:
        return self.requests / self.cpu_s if self.cpu_s else 0.0


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wrk_round(port: int, connections: int, seconds: int) -> Sample:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/score"]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {output}")
    match = re.search(r"(\d+) requests in", output)
    if match is None:
        raise RuntimeError(f"wrk's summary has no request count: {output}")
    if "Non-2xx" in output or "Socket errors" in output:
        note(f"wrk: errors: {output}")
    return Sample(int(match.group(1)), usage.ru_utime + usage.ru_stime,
                  time.monotonic() - started)


def driver_round(port: int, connections: int, seconds: int) -> Sample:
    spec = {
        "format": 2, "driver": "http",
        "target": {"address": "127.0.0.1", "port": port, "password": None, "username": None,
                   "tls": None},
        "timeline": {"interval_ns": 1_000_000_000, "warmup_intervals": 1,
                     "measure_intervals": seconds},
        "histogram": {"lowest_usec": 1, "highest_usec": 60_000_000, "significant_figures": 3},
        "params": {"processes": 1, "connections": connections, "keyspace": 1000,
                   "timeout_ns": 10_000_000_000, "rate": None, "base_path": "", "headers": {},
                   "requests": [{"name": "score", "method": "GET", "path": "/score",
                                 "headers": {}, "body": None, "weight": 1,
                                 "expect_status": None, "json_path": None}]},
    }
    load = run_load(HttpDriver(), spec)
    report = load.report
    if report.errors:
        note(f"http driver: errors {report.errors}")
    requests = sum(interval.requests for interval in report.intervals)
    return Sample(requests, load.load_cpu_s, (report.stopped_ns - report.started_ns) / 1e9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not on PATH (Debian: apt-get install wrk)", file=sys.stderr)
        return 1
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("the bench server did not start")
        wrk, ours = [], []
        for round_index in range(args.rounds):
            wrk.append(wrk_round(port, args.connections, args.seconds))
            ours.append(driver_round(port, args.connections, args.seconds))
            note(f"round {round_index + 1}: wrk {wrk[-1]}, http driver {ours[-1]}")
    finally:
        server.terminate()
        server.wait(10)
    wrk_core = statistics.median(s.per_core for s in wrk)
    our_core = statistics.median(s.per_core for s in ours)
    print(f"connections {args.connections}, {args.seconds} s x {args.rounds} rounds, "
          "one client process")
    print(f"wrk          {statistics.median(s.requests / s.wall_s for s in wrk):>10,.0f} req/s "
          f"{wrk_core:>10,.0f} req per client CPU s")
    print(f"http driver  {statistics.median(s.requests / s.wall_s for s in ours):>10,.0f} req/s "
          f"{our_core:>10,.0f} req per client CPU s")
    ratio = our_core / wrk_core if wrk_core else 0.0
    print(f"ratio (http driver / wrk, per client core): {ratio:.2f} (target >= 0.5: "
          f"{'met' if ratio >= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
