"""Clock offset estimation (core/clock.py): exact bounds under any delays, by property."""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.core.clock import (
    ClockEstimate,
    ClockSample,
    estimate_offset,
    to_agent_time,
    to_coordinator_time,
)

SECOND = 1_000_000_000

offsets = st.integers(min_value=-3600 * SECOND, max_value=3600 * SECOND)
starts = st.integers(min_value=0, max_value=2**62)
# One-way delays from 0 to 1 s, independently drawn each way: as asymmetric as it gets.
delays = st.integers(min_value=0, max_value=SECOND)


@st.composite
def round_trips(draw: st.DrawFn, true_offset: int) -> ClockSample:
    """A round trip against an agent whose clock reads ``true_offset`` ns ahead of ours."""
    sent = draw(starts)
    out = draw(delays)  # network + scheduling before the agent reads its clock
    back = draw(delays)  # after the read, until we read ours again
    return ClockSample(
        sent_ns=sent, agent_ns=sent + out + true_offset, received_ns=sent + out + back
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[ClockSample]]:
    true_offset = draw(offsets)
    samples = draw(st.lists(round_trips(true_offset), min_size=1, max_size=20))
    return true_offset, samples


@given(scenarios())
def test_estimate_is_within_its_uncertainty_of_the_truth(
    scenario: tuple[int, list[ClockSample]],
) -> None:
    true_offset, samples = scenario
    estimate = estimate_offset(samples)
    assert abs(estimate.offset_ns - true_offset) <= estimate.uncertainty_ns


@given(scenarios())
def test_the_sample_with_the_smallest_round_trip_is_kept(
    scenario: tuple[int, list[ClockSample]],
) -> None:
    _, samples = scenario
    estimate = estimate_offset(samples)
    best = min(sample.rtt_ns for sample in samples)
    assert estimate.rtt_ns == best
    assert estimate.uncertainty_ns == (best + 1) // 2
    assert estimate.samples == len(samples)
    assert any(
        sample.rtt_ns == best and sample.offset_ns == estimate.offset_ns for sample in samples
    )


@given(scenarios(), st.randoms(use_true_random=False))
def test_order_of_samples_does_not_matter(
    scenario: tuple[int, list[ClockSample]], random: Random
) -> None:
    _, samples = scenario
    shuffled = list(samples)
    random.shuffle(shuffled)
    assert estimate_offset(shuffled) == estimate_offset(samples)


@given(scenarios(), st.integers(min_value=-(2**40), max_value=2**40))
def test_shifting_either_clock_shifts_the_offset(
    scenario: tuple[int, list[ClockSample]], shift: int
) -> None:
    _, samples = scenario
    base = estimate_offset(samples)
    agent_ahead = estimate_offset(
        ClockSample(s.sent_ns, s.agent_ns + shift, s.received_ns) for s in samples
    )
    assert agent_ahead == ClockEstimate(
        base.offset_ns + shift, base.uncertainty_ns, base.rtt_ns, base.samples
    )
    coordinator_ahead = estimate_offset(
        ClockSample(s.sent_ns + shift, s.agent_ns, s.received_ns + shift) for s in samples
    )
    assert coordinator_ahead == ClockEstimate(
        base.offset_ns - shift, base.uncertainty_ns, base.rtt_ns, base.samples
    )


@given(scenarios(), st.lists(st.integers(min_value=0, max_value=SECOND), max_size=10))
def test_adding_slower_samples_changes_nothing(
    scenario: tuple[int, list[ClockSample]], extra_delays: list[int]
) -> None:
    _, samples = scenario
    base = estimate_offset(samples)
    best = min(samples, key=lambda s: s.rtt_ns)
    slower = [
        ClockSample(best.sent_ns, best.agent_ns, best.received_ns + delay + 1)
        for delay in extra_delays
    ]
    widened = estimate_offset([*samples, *slower])
    assert (widened.offset_ns, widened.uncertainty_ns, widened.rtt_ns) == (
        base.offset_ns,
        base.uncertainty_ns,
        base.rtt_ns,
    )


@given(offsets, starts, delays)
def test_symmetric_delays_give_the_exact_offset(true_offset: int, sent: int, delay: int) -> None:
    sample = ClockSample(sent, sent + delay + true_offset, sent + 2 * delay)
    assert estimate_offset([sample]).offset_ns == true_offset


@given(scenarios(), starts)
def test_agent_and_coordinator_times_convert_both_ways(
    scenario: tuple[int, list[ClockSample]], instant: int
) -> None:
    _, samples = scenario
    estimate = estimate_offset(samples)
    assert to_coordinator_time(to_agent_time(instant, estimate), estimate) == instant
    assert to_agent_time(instant, estimate) - instant == estimate.offset_ns


def test_a_worked_example() -> None:
    # Agent 5 ms ahead; 1 ms out, 3 ms back on the fast sample; a slow sample is ignored.
    fast = ClockSample(sent_ns=100_000_000, agent_ns=106_000_000, received_ns=104_000_000)
    slow = ClockSample(sent_ns=200_000_000, agent_ns=215_000_000, received_ns=230_000_000)
    estimate = estimate_offset([slow, fast])
    assert estimate == ClockEstimate(
        offset_ns=4_000_000, uncertainty_ns=2_000_000, rtt_ns=4_000_000, samples=2
    )
    assert abs(estimate.offset_ns - 5_000_000) <= estimate.uncertainty_ns
    assert estimate.describe() == "+4.000 ms ± 2.000 ms (rtt 4.000 ms, 2 samples)"


def test_odd_round_trips_round_the_uncertainty_up() -> None:
    sample = ClockSample(sent_ns=0, agent_ns=0, received_ns=3)
    estimate = estimate_offset([sample])
    assert (estimate.offset_ns, estimate.uncertainty_ns) == (-1, 2)
    # The truth can be anywhere in [agent - received, agent - sent] = [-3, 0].
    assert all(abs(estimate.offset_ns - truth) <= estimate.uncertainty_ns for truth in range(-3, 1))


def test_ties_in_round_trip_are_broken_by_value_not_by_order() -> None:
    early = ClockSample(sent_ns=0, agent_ns=50, received_ns=10)
    late = ClockSample(sent_ns=100, agent_ns=100, received_ns=110)  # same rtt, other offset
    assert estimate_offset([early, late]) == estimate_offset([late, early])
    assert estimate_offset([late, early]).offset_ns == early.offset_ns


def test_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        estimate_offset([])


def test_a_sample_received_before_it_was_sent_is_an_error() -> None:
    good = ClockSample(sent_ns=10, agent_ns=15, received_ns=20)
    bad = ClockSample(sent_ns=10, agent_ns=15, received_ns=9)
    with pytest.raises(ValueError, match="received before it was sent"):
        estimate_offset([good, bad])


def test_samples_can_be_any_iterable() -> None:
    samples = (ClockSample(i, i + 7, i + 2) for i in range(5))
    assert estimate_offset(samples).samples == 5
