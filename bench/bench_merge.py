"""Merging 1,000 agent-interval histograms. Target (design §7, issue 4): <= 1 s.

What the coordinator does after each repetition with what agents send: decode each encoded
histogram (standard compressed base64, µs, 1..60 s, 3 significant figures; parameters checked
before the counts are allocated, ``stats.decode_histogram``) and add them into one
(``stats.merge``). Timed separately, in the same run and on the same data:

- decode alone, each histogram dropped after decoding as the merge does (the anchor: what
  any reader of the agents' histograms pays); and decoding all while keeping them, to show
  what holding 1,000 decoded histograms (~140 KB of counts each) costs,
- decode + add (the figure held to the target),
- add only (histograms already decoded),
- reading the figures (p50..p99.9, max, mean) from the merged histogram, once,
- ``repetition_figures`` on the same 1,000 as 20 agents x 50 intervals (kept encoded, as
  reports hold them, so each is decoded once inside), which adds every per-agent,
  per-command and per-interval merge and percentile the results hold.

The histograms are realistic in size and shape: each holds 10^4..10^5 values (uniform) drawn
from one of 20 latency profiles (a log-normal body with its median between 80 µs and 2 ms, a
tail 20x slower, and rare outliers from 50 ms to 5 s). Counts per bucket are the expected
count rounded stochastically, which gives the bucket occupancy a real sample of that size has
without drawing 5x10^7 random numbers.

    .venv/bin/python bench/bench_merge.py [--histograms 1000] [--rounds 7] [--seed 1]

Needs no lab and no root; results on stdout, progress (``#``) on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lab import header, ms, note, ratio, table, verdict

from agent.histograms import HistogramParams
from coordinator.core.figures import Latency
from coordinator.core.histograms import HISTOGRAM_PARAMS, decode_histogram, encode_histogram, merge
from coordinator.core.reports import AgentReport, CommandSample, Interval
from coordinator.core.stats import repetition_figures

TARGET_S = 1.0
T = TypeVar("T")


def profile(median_usec: float, params: HistogramParams) -> list[tuple[int, float]]:
    """(bucket value, probability) for every bucket with a probability worth drawing."""
    h = params.empty()
    body = (math.log(median_usec), 0.5, 0.97)
    tail = (math.log(median_usec * 20), 1.0, 0.0295)
    outliers = (math.log(50_000), math.log(5_000_000), 0.0005)  # log-uniform 50 ms .. 5 s

    def cdf(value: float) -> float:
        if value <= 0:
            return 0.0
        x = math.log(value)
        total = 0.0
        for mu, sigma, weight in (body, tail):
            total += weight * 0.5 * (1 + math.erf((x - mu) / (sigma * math.sqrt(2))))
        low, high, weight = outliers
        total += weight * min(1.0, max(0.0, (x - low) / (high - low)))
        return total

    buckets = []
    for index in range(1, h.counts_len):
        value = h.get_value_from_index(index)
        lowest = h.get_lowest_equivalent_value(value)
        highest = h.get_highest_equivalent_value(value)
        if lowest != value or value > params.highest_usec:
            continue
        p = cdf(highest + 1) - cdf(lowest)
        if p > 1e-10:
            buckets.append((value, p))
    return buckets


def make_histograms(count: int, rng: random.Random, params: HistogramParams) -> list[Any]:
    medians = [80 * (25 ** (i / 19)) for i in range(20)]  # 80 µs .. 2 ms
    profiles = [profile(m, params) for m in medians]
    histograms = []
    for _ in range(count):
        values = rng.randint(10_000, 100_000)
        h = params.empty()
        for value, p in rng.choice(profiles):
            n = int(values * p + rng.random())
            if n:
                h.record_value(value, n)
        histograms.append(h)
    return histograms


def timed(function: Callable[[], T], rounds: int) -> tuple[float, T]:
    """Median wall time of ``rounds`` calls, and the last call's result."""
    times = []
    result: T
    for _ in range(rounds):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def as_reports(histograms: Sequence[Any], agents: int) -> list[AgentReport]:
    per_agent = len(histograms) // agents
    reports = []
    for a in range(agents):
        intervals = []
        for i in range(per_agent):
            h = histograms[a * per_agent + i]
            intervals.append(
                Interval(index=i, phase="measure", complete=True,
                         commands={"GET": CommandSample.of(h)},
                         requests=int(h.total_count), errors={}, bytes_sent=0,
                         bytes_received=0, overflow=0)
            )
        reports.append(
            AgentReport(host=f"client{a}", driver="builtin", t0_ns=0, started_ns=0,
                        start_spread_ns=0, stopped_ns=0, interval_ns=1_000_000_000,
                        warmup_intervals=0, measure_intervals=per_agent,
                        params=HISTOGRAM_PARAMS, processes=1, connections=1,
                        intervals=tuple(intervals), errors={})
        )
    return reports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histograms", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds; medians shown")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    count = args.histograms
    params = HISTOGRAM_PARAMS

    note(f"building {count} histograms (20 latency profiles)")
    rng = random.Random(args.seed)  # noqa: S311 - reproducible data, not secrets
    histograms = make_histograms(count, rng, params)
    encoded = [encode_histogram(h) for h in histograms]
    values = [int(h.total_count) for h in histograms]
    buckets = [sum(1 for c in h.counts if c) for h in histograms]
    sizes = [len(text) for text in encoded]

    header(f"bench_merge: merging {count} agent-interval histograms")
    print(f"histograms: {params.describe()}; values per histogram {min(values)}..{max(values)} "
          f"(mean {statistics.fmean(values):.0f}, total {sum(values)}); non-empty buckets "
          f"{min(buckets)}..{max(buckets)} (mean {statistics.fmean(buckets):.0f}); encoded "
          f"{statistics.fmean(sizes) / 1024:.1f} KiB each (base64), "
          f"{sum(sizes) / 2**20:.1f} MiB in all")
    print(f"median of {args.rounds} rounds each\n")

    note("timing")
    decoded = [decode_histogram(text, params) for text in encoded]

    def decode_each() -> None:
        for text in encoded:
            decode_histogram(text, params)

    t_decode, _ = timed(decode_each, args.rounds)
    t_keep, _ = timed(lambda: [decode_histogram(text, params) for text in encoded],
                      args.rounds)
    t_full, merged = timed(lambda: merge((decode_histogram(t, params) for t in encoded), params),
                           args.rounds)
    t_add, merged_again = timed(lambda: merge(decoded, params), args.rounds)
    t_figures, figures = timed(lambda: Latency.of(merged), args.rounds)
    reports = as_reports(decoded, 20)
    t_repetition, repetition = timed(
        lambda: repetition_figures(reports, list(range(count // 20)), params), args.rounds
    )
    if merged.total_count != sum(values) or merged_again.total_count != sum(values):
        raise SystemExit("BUG: merged count differs from the sum of the parts")
    if repetition.count != sum(values[: 20 * (count // 20)]):
        raise SystemExit("BUG: repetition count differs from the sum of the parts")

    def row(name: str, seconds: float) -> list[str]:
        return [name, ms(seconds), f"{seconds / count * 1e6:.1f} µs", ratio(seconds, t_decode)]

    table(
        ["step", f"{count} histograms", "per histogram", "vs decode"],
        [
            row("decode alone (anchor)", t_decode),
            row("decode all, keeping them", t_keep),
            row("decode + add (merge)", t_full),
            row("add only (decoded)", t_add),
            ["figures of the merge (p50..p99.9, max, mean), once", ms(t_figures), "-", "-"],
            row("repetition_figures, 20 agents x 50 intervals", t_repetition),
        ],
    )
    print(f"merged: {merged.total_count} values; p50 {figures.p50} µs, p99 {figures.p99} µs, "
          f"p99.9 {figures.p999} µs, max {figures.max} µs")
    print(json.dumps({
        "histograms": count, "decode_s": t_decode, "decode_keep_s": t_keep, "merge_s": t_full,
        "add_s": t_add, "figures_s": t_figures, "repetition_figures_s": t_repetition,
    }))
    verdict(f"merging {count} histograms (decode + add)", ms(t_full), f"<= {TARGET_S:g} s",
            t_full <= TARGET_S)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
