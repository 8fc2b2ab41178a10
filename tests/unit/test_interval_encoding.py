"""An interval taken at its end and encoded a slice at a time (agent/drivers/kit/recorder.py)
is each dict encoded in one call, and no slice records more than STEP_VALUES latencies."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers.intervals import OpenLoopData
from agent.drivers.kit.recorder import STEP_VALUES, LoadRecorder
from agent.drivers.spec import Timeline
from agent.histograms import CommandLatencies, HistogramParams, IntervalRecorder

PARAMS = HistogramParams(1, 60_000_000, 3)
TIMELINE = Timeline(interval_ns=1_000_000_000, warmup_intervals=1, measure_intervals=3)
counts = st.dictionaries(st.integers(1, 70_000_000), st.integers(1, 1000), max_size=600)
#: more pairs than one step records (hypothesis rarely draws them from ``counts`` alone)
many = st.dictionaries(st.integers(1, 70_000_000), st.integers(1, 1000), min_size=130,
                       max_size=600)


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


def encoded_at_once(counts: dict[int, int]) -> tuple[CommandLatencies, int]:
    """The reference: the whole dict recorded and encoded in one call (record_counts), its
    total, and the count beyond the histogram's range."""
    text, beyond = IntervalRecorder(PARAMS).encoded(counts)
    return CommandLatencies(text, sum(counts.values())), beyond


def steps_for(*dicts: dict[int, int]) -> int:
    """Steps one histogram per dict takes: a step per STEP_VALUES pairs and one for the last,
    partial (possibly empty) slice, then one to encode it."""
    return sum(len(counts) // STEP_VALUES + 2 for counts in dicts)


@settings(max_examples=40, deadline=None)
@given(many, counts, counts, many)
def test_encoding_slice_by_slice_is_encoding_at_once(get: dict[int, int], set_: dict[int, int],
                                                     shard: dict[int, int],
                                                     lateness: dict[int, int]) -> None:
    sliced = recorder_with(get, set_, shard)
    live = sliced.latencies.live(["GET", "SET"])
    encoding = sliced.encoding(sliced.take(2, complete=True, lateness=dict(lateness),
                                           swap=True))
    steps = 1
    while not encoding.step():
        steps += 1
    result = encoding.result()
    commands = {name: encoded_at_once(c) for name, c in (("GET", get), ("SET", set_)) if c}
    assert result.commands == {name: latencies for name, (latencies, _) in commands.items()}
    assert result.overflow == sum(beyond for _, beyond in commands.values())
    assert result.shards == ({"10.0.0.1:7000": encoded_at_once(shard)[0]} if shard else {})
    assert (result.requests, result.index, result.phase) == (
        sum(get.values()) + sum(set_.values()), 2, "measure")
    assert result.open_loop == OpenLoopData(sent=5, late=1, lateness_max_usec=1500,
                                            lateness=encoded_at_once(lateness)[0].histogram)
    # at most STEP_VALUES latencies recorded per step: exactly this many steps
    assert steps == steps_for(*(c for c in (get, set_, shard) if c), lateness)
    # the next interval starts empty, in the loop's live list too
    assert live == [{}, {}] and live[0] is sliced.bucket("GET")
    # rolling at once (loads that hold their dicts) gives the same interval
    assert recorder_with(get, set_, shard).roll(2, complete=True).commands == result.commands


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
