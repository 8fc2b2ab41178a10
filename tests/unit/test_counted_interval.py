"""An interval packed by a load process a slice at a time (agent/drivers/kit/recorder.py) and
encoded by the agent (agent/drivers/kit/counted.py) is the interval encoded where it was
recorded: every count, the overflow, the open loop's lateness; no slice packs more than
STEP_ITEMS latencies; and a malformed packing is refused."""

from __future__ import annotations

import base64
import json
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers.intervals import OpenLoopData, ScheduleLateness, merge_intervals
from agent.drivers.kit.counted import (
    CountedInterval,
    CountsPacking,
    merge_counts,
    pack_counts,
    unpack_counts,
)
from agent.drivers.kit.recorder import STEP_ITEMS, LoadRecorder
from agent.drivers.spec import Timeline
from agent.histograms import CommandLatencies, HistogramParams, IntervalRecorder

PARAMS = HistogramParams(1, 60_000_000, 3)
TIMELINE = Timeline(interval_ns=1_000_000_000, warmup_intervals=1, measure_intervals=3)
#: latencies beyond the range (70 s) and a lateness below 0 must survive the packing
counts = st.dictionaries(st.integers(-5, 70_000_000), st.integers(0, 2**40), max_size=600)
#: what a load process records: every count at least 1 (hdrh's bookkeeping of a count of 0
#: differs between recording and adding)
recorded = st.dictionaries(st.integers(0, 70_000_000), st.integers(1, 2**40), max_size=300)
#: more pairs than one step packs (hypothesis rarely draws them from ``counts`` alone)
many = st.dictionaries(st.integers(1, 70_000_000), st.integers(1, 1000), min_size=520,
                       max_size=1200)


def recorder_with(get: dict[int, int], set_: dict[int, int],
                  shard: dict[int, int]) -> LoadRecorder:
    recorder = LoadRecorder(PARAMS, ["GET", "SET"], TIMELINE)
    recorder.bucket("GET").update(get)
    recorder.bucket("SET").update(set_)
    recorder.shards = IntervalRecorder(PARAMS, ["10.0.0.1:7000"])
    recorder.shards.bucket("10.0.0.1:7000").update(shard)
    recorder.requests = sum(get.values()) + sum(set_.values())
    recorder.errors = {"WRONGTYPE": 2}
    recorder.open_loop = OpenLoopData(sent=5, late=1, lateness_max_usec=1500)
    return recorder


def encoded_at_once(counts: dict[int, int]) -> tuple[CommandLatencies, int]:
    """The reference: the whole dict recorded and encoded in the load process, as it was
    before, its total, and the count beyond the histogram's range."""
    text, beyond = IntervalRecorder(PARAMS).encoded(counts)
    return CommandLatencies(text, sum(counts.values())), beyond


@settings(max_examples=60, deadline=None)
@given(counts)
def test_packed_counts_unpack_to_the_same_counts(latencies: dict[int, int]) -> None:
    assert unpack_counts(pack_counts(latencies)) == latencies


@settings(max_examples=40, deadline=None)
@given(many, counts, counts, counts, counts)
def test_an_interval_packed_there_and_encoded_here_is_the_interval_encoded_there(
        get: dict[int, int], set_: dict[int, int], shard: dict[int, int],
        lateness: dict[int, int], waiting: dict[int, int]) -> None:
    get, set_, shard = ({k: v for k, v in c.items() if k > 0} for c in (get, set_, shard))
    recorder = recorder_with(get, set_, shard)
    live = recorder.latencies.live(["GET", "SET"])
    packing = recorder.packing(recorder.take(
        2, complete=True, lateness=ScheduleLateness(dict(lateness), dict(waiting)), swap=True))
    steps = 1
    while not packing.step():
        steps += 1
    wire = json.loads(json.dumps(packing.result().to_json()))  # the channel: JSON
    result = CountedInterval.from_json(wire).encoded(IntervalRecorder(PARAMS))
    commands = {name: encoded_at_once(c) for name, c in (("GET", get), ("SET", set_)) if c}
    assert result.commands == {name: latencies for name, (latencies, _) in commands.items()}
    assert result.overflow == sum(beyond for _, beyond in commands.values())
    assert result.shards == ({"10.0.0.1:7000": encoded_at_once(shard)[0]} if shard else {})
    assert (result.requests, result.index, result.phase, result.complete, result.errors) == (
        sum(get.values()) + sum(set_.values()), 2, "measure", True, {"WRONGTYPE": 2})
    assert result.open_loop == OpenLoopData(
        sent=5, late=1, lateness_max_usec=1500, lateness=encoded_at_once(lateness)[0].histogram,
        lateness_waiting=encoded_at_once(waiting)[0].histogram)
    # at most STEP_ITEMS latencies packed per step: exactly this many steps (both lateness
    # distributions are packed even when empty)
    assert steps == sum(len(c) // STEP_ITEMS + 1 for c in (get, set_, shard, lateness, waiting)
                        if c or c is lateness or c is waiting)
    # the next interval starts empty, in the loop's live list too
    assert live == [{}, {}] and live[0] is recorder.bucket("GET")


def test_a_closed_loop_interval_has_no_lateness_and_an_empty_one_encodes_to_nothing() -> None:
    recorder = LoadRecorder(PARAMS, ["GET"], TIMELINE)
    data = recorder.roll(0, complete=False).encoded(IntervalRecorder(PARAMS))
    assert (data.commands, data.requests, data.complete, data.phase, data.open_loop) == (
        {}, 0, False, "warmup", None)


def test_a_swap_leaves_the_taken_dicts_as_they_were_and_the_loop_records_anew() -> None:
    recorder = LoadRecorder(PARAMS, ["GET"], TIMELINE)
    (live,) = [recorder.latencies.live(["GET"])]
    live[0][120] = 3
    taken = recorder.take(0, complete=True, swap=True)
    live[0][80] = 1  # the loop, after the boundary: the next interval
    assert taken.commands == {"GET": {120: 3}}
    assert recorder.take(1, complete=True, swap=True).commands == {"GET": {80: 1}}


def test_without_a_swap_a_held_dict_stays_the_one_recorded_into() -> None:
    recorder = LoadRecorder(PARAMS, ["GET"], TIMELINE)
    held = recorder.bucket("GET")
    held[120] = 3
    assert recorder.take(0, complete=True).commands == {"GET": {120: 3}}
    held[80] = 1
    assert recorder.take(1, complete=True).commands == {"GET": {80: 1}}
    assert held == {}


@pytest.mark.parametrize("counts", [
    {120: 2**32}, {2**32: 1}, {-1: 1}, {5: 1, 2**40: 3, 7: 2**33},
])
def test_values_beyond_32_bits_or_below_0_widen_the_packing_even_part_way(
        counts: dict[int, int]) -> None:
    latencies = {usec: 1 for usec in range(1, 1_001)} | counts  # the wide ones come last
    packing = CountsPacking(latencies)
    while not packing.step(300):
        pass
    assert packing.text().startswith("q")
    assert unpack_counts(packing.text()) == latencies
    assert pack_counts({120: 3}).startswith("I")


def packed(*values: int, typecode: str = "q") -> str:
    return typecode + base64.b64encode(array(typecode, values).tobytes()).decode()


@pytest.mark.parametrize(("text", "problem"), [
    ("Inot base64!", "not packed counts"),
    ("Ié", "not packed counts"),
    ("x", "type 'x'"),
    ("", "type ''"),
    (packed(1, 2, 3, typecode="I"), "not whole pairs"),
    (packed(1, 2, typecode="i"), "type 'i'"),
    (packed(120), "not whole pairs"),
    (packed(120, 130, 1, 2)[:-4], "not whole pairs"),
    (packed(120, 120, 1, 2), "listed twice"),
    (packed(120, -1), "negative count"),
])
def test_malformed_packed_counts_are_refused_in_one_line(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        unpack_counts(text)


def test_a_malformed_message_is_refused_naming_its_field() -> None:
    message = LoadRecorder(PARAMS, ["GET"], TIMELINE).roll(0, complete=True).to_json()
    message["requests"] = "12"
    with pytest.raises(ValueError, match=r"^requests: expected an integer"):
        CountedInterval.from_json(message)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(recorded, recorded, st.booleans()), min_size=1, max_size=4),
       st.integers(1, 5))
def test_merging_counts_then_encoding_is_merging_the_encoded_intervals(
        processes: list[tuple[dict[int, int], dict[int, int], bool]], expected: int) -> None:
    """What the agent does (add the processes' counts, encode once) gives the interval that
    encoding each process's and merging the histograms gave."""
    parts = []
    for number, (get, lateness, complete) in enumerate(processes):
        recorder = LoadRecorder(PARAMS, ["GET", "SET"], TIMELINE)
        recorder.bucket("GET").update({k: v for k, v in get.items() if k > 0})
        recorder.bucket("SET").update({number + 1: 1})
        recorder.requests, recorder.errors = len(get), {"ERR": number}
        recorder.open_loop = OpenLoopData(sent=5, late=number, lateness_max_usec=10 * number)
        queued = {usec: count for usec, count in lateness.items() if usec % 2}
        parts.append(recorder.packing(recorder.take(
            3, complete=complete, lateness=ScheduleLateness(lateness, queued),
            swap=True)).finish().unpacked())
    merged = merge_counts(parts, IntervalRecorder(PARAMS), expected)
    one_by_one = [merge_counts([part], IntervalRecorder(PARAMS), 1) for part in parts]
    assert merged == merge_intervals(one_by_one, PARAMS, expected)
