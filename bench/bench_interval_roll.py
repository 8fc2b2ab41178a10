"""What an interval's end costs a load process: the pauses its loop takes at each boundary.

A load process packs each interval's latencies as ``{µs: count}`` counts, a slice at a time
between its loop's rounds, and the agent encodes them into HdrHistograms
(agent/drivers/kit/counted.py). The anchor is what the load process did before, measured in
the same run on the same counts: recording every distinct latency into a histogram and encoding
it (``IntervalRecorder.encoded``, the agent's work now), also a slice at a time (128 latencies,
or one histogram's ``encode``, per loop round).

The intervals are synthetic, with the shapes an open loop at 50 % of capacity records on
loopback (bench/bench_open_loop.py): GET and SET latencies, log-normal around 26 µs with a
tail to milliseconds, rounded to µs, and the schedule's lateness (mostly 0-5 µs); ``stalled``
adds a 300 ms stall, whose replies spread over every µs up to 300 ms. Per case, the medians
over ``--rounds`` rolls of:

* **now, in the load process**: in all, and its longest single pause: ``LoadRecorder.take``,
  each ``IntervalPacking.step``, and the message's JSON as ``Channel.send`` makes it;
* **now, in the agent**: the JSON read back, ``CountedInterval.from_json`` and ``encoded``;
* **before** (the anchor), in the load process: every histogram recorded and encoded, in all,
  and its longest slice (one histogram's ``encode``).

A second table: the agent's work for one interval over 1, 8 and 32 load processes sharing the
same replies: now their counts unpacked, added and encoded once (``merge_counts``); before,
their encoded intervals merged (``merge_intervals``: decode, add, encode), with what encoding
them had cost the load processes beside it.

    .venv/bin/python bench/bench_interval_roll.py [--rounds 30] [--seed 1]

No lab, no root, no server; results on stdout, progress (``#``) on stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lab import header, median, note, ratio, table

from agent.drivers.intervals import IntervalData, OpenLoopData, merge_intervals
from agent.drivers.kit.counted import CountedInterval, IntervalCounts, merge_counts
from agent.drivers.kit.recorder import LoadRecorder
from agent.drivers.spec import Timeline
from agent.histograms import HistogramParams, IntervalRecorder, encode, record_counts

PARAMS = HistogramParams()
TIMELINE = Timeline(interval_ns=1_000_000_000, warmup_intervals=1, measure_intervals=5)
#: Replies in one 1 s interval at 50 % of the closed loop's capacity on this machine.
REPLIES = 55_000


def latencies(rng: random.Random, replies: int, stall_usec: int) -> dict[int, int]:
    """``{µs: count}`` of ``replies`` replies: log-normal around 26 µs, 1 % tail to 5 ms;
    with a stall, a tenth of them spread evenly up to ``stall_usec``."""
    counts: dict[int, int] = {}
    for _ in range(replies):
        if stall_usec and rng.random() < 0.1:
            usec = rng.randint(1, stall_usec)
        elif rng.random() < 0.01:
            usec = rng.randint(100, 5_000)
        else:
            usec = max(1, round(rng.lognormvariate(3.26, 0.35)))
        counts[usec] = counts.get(usec, 0) + 1
    return counts


def lateness(rng: random.Random, sends: int) -> dict[int, int]:
    counts: dict[int, int] = {}
    for _ in range(sends):
        usec = rng.randint(0, 5) if rng.random() < 0.98 else rng.randint(6, 3_000)
        counts[usec] = counts.get(usec, 0) + 1
    return counts


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter_ns()
    action()
    return (time.perf_counter_ns() - began) / 1e3


def one_case(name: str, stall_usec: int, rounds: int, rng: random.Random) -> list[object]:
    get = latencies(rng, REPLIES * 9 // 10, stall_usec)
    set_ = latencies(rng, REPLIES // 10, stall_usec)
    late = lateness(rng, REPLIES)
    encoder = IntervalRecorder(PARAMS)
    now_all: list[float] = []
    now_longest: list[float] = []
    agent: list[float] = []
    before_all: list[float] = []
    before_longest: list[float] = []
    for _ in range(rounds):
        recorder = LoadRecorder(PARAMS, ["GET", "SET"], TIMELINE)
        recorder.bucket("GET").update(get)
        recorder.bucket("SET").update(set_)
        recorder.open_loop = OpenLoopData(sent=REPLIES)
        taken: list[IntervalCounts] = []
        pauses = [timed(lambda r=recorder, into=taken: into.append(
            r.take(1, complete=True, lateness=dict(late), swap=True)))]
        packing = recorder.packing(taken[0])
        done: list[bool] = [False]
        while not done[0]:
            pauses.append(timed(lambda p=packing, d=done: d.__setitem__(0, p.step())))
        message: list[str] = []
        pauses.append(timed(lambda p=packing, into=message: into.append(json.dumps(
            {"type": "interval_counts", "interval": p.result().to_json()},
            separators=(",", ":")))))
        now_all.append(sum(pauses))
        now_longest.append(max(pauses))
        agent.append(timed(lambda text=message[0]: CountedInterval.from_json(
            json.loads(text)["interval"]).encoded(encoder)))
        slices = []
        for counts in (get, set_, late):
            scratch = PARAMS.empty()
            recorded = timed(lambda c=counts, h=scratch: record_counts(h, c))
            slices.append((recorded, timed(lambda h=scratch: encode(h))))
        before_all.append(sum(recorded + encoded for recorded, encoded in slices))
        before_longest.append(max(encoded for _, encoded in slices))
    distinct = len(get) + len(set_) + len(late)
    return [name, f"{distinct:,}", f"{median(now_all):,.0f}", f"{median(now_longest):,.0f}",
            f"{median(agent):,.0f}", f"{median(before_all):,.0f}",
            f"{median(before_longest):,.0f}",
            ratio(median(now_all), median(before_all)),
            ratio(median(now_longest), median(before_longest))]


def agent_case(processes: int, rounds: int, rng: random.Random) -> list[object]:
    """The agent's work for one interval of ``processes`` load processes: now, each one's
    counts unpacked, added and encoded once (``merge_counts``); before, the encoded intervals
    merged (decode, add, encode), their encoding done by the load processes (timed apart)."""
    texts = []
    for _ in range(processes):
        recorder = LoadRecorder(PARAMS, ["GET", "SET"], TIMELINE)
        recorder.bucket("GET").update(latencies(rng, REPLIES * 9 // 10 // processes, 0))
        recorder.bucket("SET").update(latencies(rng, REPLIES // 10 // processes, 0))
        recorder.open_loop = OpenLoopData(sent=REPLIES // processes)
        taken = recorder.take(1, complete=True, swap=True,
                              lateness=lateness(rng, REPLIES // processes))
        texts.append(json.dumps(recorder.packing(taken).finish().to_json()))
    encoder = IntervalRecorder(PARAMS)
    now: list[float] = []
    before: list[float] = []
    their_encoding: list[float] = []
    for _ in range(rounds):
        now.append(timed(lambda: merge_counts(
            [CountedInterval.from_json(json.loads(text)).unpacked() for text in texts],
            encoder, processes)))
        encoded: list[IntervalData] = []
        their_encoding.append(timed(lambda into=encoded: into.extend(
            CountedInterval.from_json(json.loads(text)).encoded(encoder) for text in texts)))
        before.append(timed(lambda parts=encoded: merge_intervals(parts, PARAMS, processes)))
    return [str(processes), f"{median(now):,.0f}", f"{median(before):,.0f}",
            f"{median(their_encoding):,.0f}", ratio(median(now), median(before))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)  # noqa: S311 (synthetic latencies, not a secret)
    header("an interval's end: the load process's pause")
    rows = []
    for name, stall_usec in (("50 % of capacity", 0), ("stalled 300 ms", 300_000)):
        note(f"{name}: {args.rounds} rounds")
        rows.append(one_case(name, stall_usec, args.rounds, rng))
    table(["interval", "distinct µs", "now: in all µs", "now: longest µs", "agent now µs",
           "before: in all µs", "before: longest µs", "in all ÷", "longest ÷"], rows,
          title=f"one 1 s interval of {REPLIES:,} replies (GET 9 : SET 1) and its lateness, "
                f"medians of {args.rounds} rolls")
    agent_rows = []
    for processes in (1, 8, 32):
        note(f"the agent, {processes} load process(es)")
        agent_rows.append(agent_case(processes, max(3, args.rounds // 3), rng))
    table(["load processes", "agent now µs", "agent before µs",
           "before, in the load processes µs", "agent now ÷ before"], agent_rows,
          title=f"the agent's work for one merged interval of {REPLIES:,} replies over its load "
                "processes (now: counts added, encoded once; before: the encoded intervals "
                "merged, their encoding done in the load processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
