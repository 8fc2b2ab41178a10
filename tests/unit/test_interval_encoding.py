"""An interval taken at its end and encoded a slice at a time (agent/drivers/kit/recorder.py)
is the interval encoded at once, and no slice records more than STEP_VALUES latencies."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers.intervals import OpenLoopData
from agent.drivers.kit.recorder import STEP_VALUES, LoadRecorder
from agent.drivers.spec import Timeline
from agent.histograms import HistogramParams, IntervalRecorder

PARAMS = HistogramParams(1, 60_000_000, 3)
TIMELINE = Timeline(interval_ns=1_000_000_000, warmup_intervals=1, measure_intervals=3)
counts = st.dictionaries(st.integers(1, 70_000_000), st.integers(1, 1000), max_size=600)


def recorder_with(get: dict[int, int], set_: dict[int, int],
                  shard: dict[int, int]) -> LoadRecorder:
    recorder = LoadRecorder(PARAMS, ["GET", "SET"], TIMELINE)
    recorder.bucket("GET").update(get)
    recorder.bucket("SET").update(set_)
    recorder.shards = IntervalRecorder(PARAMS, ["10.0.0.1:7000"])
    recorder.shards.bucket("10.0.0.1:7000").update(shard)
    recorder.requests = sum(get.values()) + sum(set_.values())
    recorder.open_loop = OpenLoopData(sent=5, late=1, lateness_max_usec=1500)
    return recorder


@settings(max_examples=40, deadline=None)
@given(counts, counts, counts, counts)
def test_encoding_slice_by_slice_is_encoding_at_once(get: dict[int, int], set_: dict[int, int],
                                                     shard: dict[int, int],
                                                     lateness: dict[int, int]) -> None:
    at_once = recorder_with(get, set_, shard).roll(2, complete=True)
    expected_lateness = IntervalRecorder(PARAMS).encoded(lateness)[0]

    sliced = recorder_with(get, set_, shard)
    live = sliced.latencies.live(["GET", "SET"])
    encoding = sliced.encoding(sliced.take(2, complete=True, lateness=dict(lateness),
                                           swap=True))
    scratch_counts = []
    while not encoding.step():
        scratch_counts.append(sliced.latencies.scratch().total_count
                              + (sliced.shards.scratch().total_count if sliced.shards else 0))
    result = encoding.result()
    assert result.commands == at_once.commands
    assert result.shards == at_once.shards
    assert result.overflow == at_once.overflow
    assert (result.requests, result.index, result.phase) == (at_once.requests, 2, "measure")
    assert result.open_loop == OpenLoopData(sent=5, late=1, lateness_max_usec=1500,
                                            lateness=expected_lateness)
    # every slice records at most STEP_VALUES distinct latencies
    distinct = len(get) + len(set_) + len(shard) + len(lateness)
    assert len(scratch_counts) + 1 >= distinct / STEP_VALUES
    # the next interval starts empty, in the loop's live list too
    assert live == [{}, {}] and live[0] is sliced.bucket("GET")


def test_a_swap_leaves_the_taken_dicts_as_they_were_and_the_loop_records_anew() -> None:
    recorder = LoadRecorder(PARAMS, ["GET"], TIMELINE)
    (live,) = [recorder.latencies.live(["GET"])]
    live[0][120] = 3
    taken = recorder.take(0, complete=True, swap=True)
    live[0][80] = 1  # the loop, after the boundary: the next interval
    assert taken.latencies == {"GET": {120: 3}}
    assert recorder.take(1, complete=True, swap=True).latencies == {"GET": {80: 1}}


def test_without_a_swap_a_held_dict_stays_the_one_recorded_into() -> None:
    recorder = LoadRecorder(PARAMS, ["GET"], TIMELINE)
    held = recorder.bucket("GET")
    held[120] = 3
    assert recorder.take(0, complete=True).latencies == {"GET": {120: 3}}
    held[80] = 1
    assert recorder.take(1, complete=True).latencies == {"GET": {80: 1}}
    assert held == {}


def test_an_interval_with_nothing_recorded_is_encoded_in_one_step() -> None:
    recorder = LoadRecorder(PARAMS, ["GET"], TIMELINE)
    encoding = recorder.encoding(recorder.take(0, complete=False, swap=True))
    assert encoding.step()
    data = encoding.result()
    assert (data.commands, data.requests, data.complete, data.phase) == ({}, 0, False, "warmup")
